"""`python -m voicemesh.stt`: run an stt instance (settings from VOICEMESH_*)."""

from .service import main

main()
