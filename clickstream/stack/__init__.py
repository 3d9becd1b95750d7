"""The local stack: ``clickstream up`` starts and supervises every component on loopback."""
