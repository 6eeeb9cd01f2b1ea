"""Measuring synthetic images: PSNR / SSIM / MAE with a stated protocol, evaluation reports, montages."""
