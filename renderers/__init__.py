"""Renderers: pure functions turning one annotation or 3D object into an RGB image."""
