"""A VGG-style CIFAR-10 classifier in Keras (seed 002's model), seeded; needs the `tf` extra."""

from __future__ import annotations

from typing import Any

import numpy as np


def _vgg(keras: Any, dtype: str, widths: tuple[int, ...], convs_per_block: int, dense: int, num_classes: int,
         batch_norm: bool) -> tuple[Any, Any, list[Any]]:
    """The network in `dtype`: (model, its input, its BatchNorm layers in forward order)."""
    layers = keras.layers
    image = keras.Input(shape=(32, 32, 3), name="image", dtype=dtype)
    x = image
    bns = []
    for block, width in enumerate(widths, start=1):
        for conv in range(1, convs_per_block + 1):
            x = layers.Conv2D(width, 3, padding="same", use_bias=not batch_norm, kernel_initializer="he_normal",
                              name=f"block{block}_conv{conv}", dtype=dtype)(x)
            if batch_norm:
                bn = layers.BatchNormalization(name=f"block{block}_bn{conv}", dtype=dtype)
                bns.append(bn)
                x = bn(x)
            x = layers.Activation("relu", name=f"block{block}_relu{conv}", dtype=dtype)(x)
        x = layers.MaxPooling2D(2, name=f"block{block}_pool", dtype=dtype)(x)
    x = layers.Flatten(name="flatten", dtype=dtype)(x)
    x = layers.Dense(dense, use_bias=not batch_norm, kernel_initializer="he_normal", name="fc1", dtype=dtype)(x)
    if batch_norm:
        bn = layers.BatchNormalization(name="fc1_bn", dtype=dtype)
        bns.append(bn)
        x = bn(x)
    x = layers.Activation("relu", name="fc1_relu", dtype=dtype)(x)
    x = layers.Dropout(0.5, name="dropout", dtype=dtype)(x)
    x = layers.Dense(num_classes, name="logits", dtype=dtype)(x)
    probs = layers.Activation("softmax", name="probs", dtype=dtype)(x)
    return keras.Model(image, probs, name="cifar10_vgg"), image, bns


def cifar10_vgg(widths: tuple[int, ...] = (32, 64, 128), convs_per_block: int = 2, dense: int = 128,
                num_classes: int = 10, batch_norm: bool = True, calibration_images: int = 64) -> Any:
    """Blocks of (Conv 3x3 -> BatchNorm -> ReLU) x convs_per_block -> MaxPool, then Flatten -> Dense -> ReLU ->
    Dropout -> Dense -> softmax. Input `image` (N, 32, 32, 3), output `probs` (N, num_classes) probabilities.

    BatchNorm layers get seeded affine parameters and moving statistics measured on `calibration_images` seeded
    images (numpy's global generator, which `keras.utils.set_random_seed` seeds), so exporters really have to fold
    non-trivial BatchNorms and the classifier's answers depend on its input.

    The statistics are measured in float64 on a twin of the network and only then rounded to float32: measured
    in float32, their last bits follow the CPU's convolution kernels (oneDNN on or off, AVX2, AVX-512, AMX), so
    the weights, and with them the golden's weight hash, would differ from machine to machine.
    """
    from parity.frameworks.keras import import_keras

    _, keras = import_keras()
    options = dict(widths=tuple(widths), convs_per_block=convs_per_block, dense=dense, num_classes=num_classes,
                   batch_norm=batch_norm)
    model, _, bns = _vgg(keras, "float32", **options)
    twin, twin_image, twin_bns = _vgg(keras, "float64", **options)
    twin.set_weights([np.asarray(w, dtype=np.float64) for w in model.get_weights()])
    # Trained-looking BatchNorm layers instead of the (1, 0, 0, 1) identity: seeded affine parameters, and moving
    # statistics measured layer by layer on seeded calibration images, as training would leave them. Without the
    # measured statistics an untrained net answers the same class for every input.
    calibration = np.random.uniform(0.0, 1.0, (calibration_images, 32, 32, 3)).astype(np.float32)
    for bn, twin_bn in zip(bns, twin_bns):
        gamma = np.random.uniform(0.5, 1.5, bn.gamma.shape).astype(np.float32)
        beta = np.random.uniform(-0.2, 0.2, bn.beta.shape).astype(np.float32)
        features = np.asarray(keras.Model(twin_image, twin_bn.input)(calibration.astype(np.float64), training=False),
                              dtype=np.float64)
        axes = tuple(range(features.ndim - 1))
        mean = features.mean(axis=axes).astype(np.float32)
        var = (features.var(axis=axes) + 1e-3).astype(np.float32)
        bn.set_weights([gamma, beta, mean, var])
        twin_bn.set_weights([w.astype(np.float64) for w in (gamma, beta, mean, var)])  # the next layers see them
    return model
