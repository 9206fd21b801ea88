"""Export side: trained Keras models -> verified ONNX files (FP32, FP16, INT8 QDQ) in a model bundle.

TensorFlow is imported only inside the conversion subprocess (see convert.py), so importing this
package, and ``hashtag export --help``, stays quick.
"""
