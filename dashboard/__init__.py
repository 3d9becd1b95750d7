"""Dashboard layer (the QuickSight role): a Streamlit app over the query layer."""
