"""Collection layer (the API Gateway role): HTTP endpoints that validate events and produce them to Kafka."""
