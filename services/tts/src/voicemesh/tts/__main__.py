"""`python -m voicemesh.tts`: run a tts instance (settings from VOICEMESH_*)."""

from .service import main

main()
