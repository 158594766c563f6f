"""Everything that talks to the network: the Live session, tools, and the local stand-in."""
