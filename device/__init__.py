"""pi-live-voice: the Pi side of the device and the daemon that wires it together."""
