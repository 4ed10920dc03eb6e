"""The data assets; definitions.py loads each module into its group."""
