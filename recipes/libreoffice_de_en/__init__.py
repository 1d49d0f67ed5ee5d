"""Offline LibreOffice help + UI parallel corpus (Debian packages) and its training recipe."""
