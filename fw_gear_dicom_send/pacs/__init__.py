"""The PACS verbs beside sending: find, move and get, and the listener that files."""
