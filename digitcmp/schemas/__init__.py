"""JSON Schema files of digitcmp's results files and ONNX metadata (package data; see digitcmp.schema)."""
