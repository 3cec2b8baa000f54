"""Using a trained model: pictures to 28x28 inputs (``preprocess``), predictions
(``predict``, with torch or ONNX Runtime behind one interface), and ONNX export (``export``)."""
