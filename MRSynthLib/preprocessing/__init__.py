"""Model space and back: reorientation, registration, resampling, normalisation, bias correction, input screening."""
