"""fashion-cnn: classify clothing images with a small Keras 3 CNN trained on Fashion-MNIST.

Importing the package does nothing but define names: no Keras import, no data access.
"""

__version__ = "0.1.0"
