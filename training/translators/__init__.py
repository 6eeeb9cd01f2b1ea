"""Stage 2: the fusion translator and the generative translator kinds on frozen latents, one trainer per kind, the shared loop and the kind table."""
