"""Zone rules: small pure units that turn tracked detections and the time into violation events."""
