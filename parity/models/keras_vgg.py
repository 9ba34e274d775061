"""A VGG-style CIFAR-10 classifier in Keras (seed 002's model), seeded; needs the `tf` extra."""

from __future__ import annotations

from typing import Any

import numpy as np


def cifar10_vgg(widths: tuple[int, ...] = (32, 64, 128), convs_per_block: int = 2, dense: int = 128,
                num_classes: int = 10, batch_norm: bool = True, calibration_images: int = 64) -> Any:
    """Blocks of (Conv 3x3 -> BatchNorm -> ReLU) x convs_per_block -> MaxPool, then Flatten -> Dense -> ReLU ->
    Dropout -> Dense -> softmax. Input `image` (N, 32, 32, 3), output `probs` (N, num_classes) probabilities.

    BatchNorm layers get seeded affine parameters and moving statistics measured on `calibration_images` seeded
    images (numpy's global generator, which `keras.utils.set_random_seed` seeds), so exporters really have to fold
    non-trivial BatchNorms and the classifier's answers depend on its input.
    """
    from parity.frameworks import import_keras

    _, keras = import_keras()
    layers = keras.layers
    image = keras.Input(shape=(32, 32, 3), name="image")
    x = image
    bns = []
    for block, width in enumerate(widths, start=1):
        for conv in range(1, convs_per_block + 1):
            x = layers.Conv2D(width, 3, padding="same", use_bias=not batch_norm, kernel_initializer="he_normal",
                              name=f"block{block}_conv{conv}")(x)
            if batch_norm:
                bn = layers.BatchNormalization(name=f"block{block}_bn{conv}")
                bns.append(bn)
                x = bn(x)
            x = layers.Activation("relu", name=f"block{block}_relu{conv}")(x)
        x = layers.MaxPooling2D(2, name=f"block{block}_pool")(x)
    x = layers.Flatten(name="flatten")(x)
    x = layers.Dense(dense, use_bias=not batch_norm, kernel_initializer="he_normal", name="fc1")(x)
    if batch_norm:
        bn = layers.BatchNormalization(name="fc1_bn")
        bns.append(bn)
        x = bn(x)
    x = layers.Activation("relu", name="fc1_relu")(x)
    x = layers.Dropout(0.5, name="dropout")(x)
    x = layers.Dense(num_classes, name="logits")(x)
    probs = layers.Activation("softmax", name="probs")(x)
    model = keras.Model(image, probs, name="cifar10_vgg")
    # Trained-looking BatchNorm layers instead of the (1, 0, 0, 1) identity: seeded affine parameters, and moving
    # statistics measured layer by layer on seeded calibration images, as training would leave them. Without the
    # measured statistics an untrained net answers the same class for every input.
    calibration = np.random.uniform(0.0, 1.0, (calibration_images, 32, 32, 3)).astype(np.float32)
    for bn in bns:
        gamma = np.random.uniform(0.5, 1.5, bn.gamma.shape).astype(np.float32)
        beta = np.random.uniform(-0.2, 0.2, bn.beta.shape).astype(np.float32)
        features = np.asarray(keras.Model(image, bn.input)(calibration, training=False), dtype=np.float64)
        axes = tuple(range(features.ndim - 1))
        mean = features.mean(axis=axes).astype(np.float32)
        var = features.var(axis=axes).astype(np.float32) + np.float32(1e-3)
        bn.set_weights([gamma, beta, mean, var])
    return model
