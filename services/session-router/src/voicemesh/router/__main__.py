"""`python -m voicemesh.router`: run a session-router instance (settings from VOICEMESH_*)."""

from .service import main

main()
