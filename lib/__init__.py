"""What needs no Django: plain Python that any part of Fat Controller (or a test) can import."""
