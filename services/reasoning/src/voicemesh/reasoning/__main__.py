"""`python -m voicemesh.reasoning`: run a reasoning instance (settings from VOICEMESH_*)."""

from .service import main

main()
