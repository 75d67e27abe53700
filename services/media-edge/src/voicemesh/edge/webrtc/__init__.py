"""WebRTC calls (aiortc): the WHIP-style endpoint on the edge's HTTP port and the port
each call becomes. See transport.py and port.py."""
