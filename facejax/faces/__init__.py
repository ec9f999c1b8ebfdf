"""Classical computer vision for faces: numpy, OpenCV and dlib only (no JAX)."""
