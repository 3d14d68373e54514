"""Raw image files → train / val / test HDF5 splits."""
