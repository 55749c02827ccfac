"""The measured paths: HTTP (wrk), the background workers, and the end-to-end runs."""
