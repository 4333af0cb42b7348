"""Files: images in, galleries and records out, class names."""
