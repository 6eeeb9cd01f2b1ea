"""Stage 1: the shared autoencoder's training, objective and losses (SRB teachers, PatchGAN), held-out evaluation and seeding from earlier runs."""
