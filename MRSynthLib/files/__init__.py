"""Files in and out: image I/O (the one owner of SimpleITK<->numpy axis order), atomic writes, the output path
guard, header checks, file hashes for provenance, dataset folder layouts."""
