"""The classic Keras CIFAR-10 program in Ember, side by side with Ember's native style.

    python examples/keras_cifar10.py             # CIFAR-10 from $EMBER_DATA/cifar-10-batches-py
    python examples/keras_cifar10.py --epochs 1  # (synthetic CIFAR-shaped data when it is absent)

The Keras program changes only its imports. Both models are the same network, trained the
same way on Ember's kernels; the Keras one takes channels-last images and one-hot labels and
ends in a softmax, which its loss folds into the fused softmax cross-entropy.
"""

import argparse
import time

import numpy as np

import ember


def data():
    from ember.keras.datasets import cifar10

    try:
        return cifar10.load_data()
    except FileNotFoundError as e:
        print(f"{e}\n-> training on synthetic CIFAR-shaped data instead\n")
        x, y = ember.datasets.synthetic(6000, shape=(3, 32, 32), classes=10, seed=0)
        x = np.clip(x * 40 + 128, 0, 255).astype(np.uint8).transpose(0, 2, 3, 1)  # Keras's layout
        y = y.astype(np.uint8).reshape(-1, 1)
        return (x[:5000], y[:5000]), (x[5000:], y[5000:])


def keras_style(epochs):
    from ember.keras import Sequential, layers, utils

    model = Sequential([
        layers.Conv2D(32, (3, 3), activation='relu', input_shape=(32, 32, 3)),
        layers.MaxPooling2D((2, 2)),
        layers.Flatten(),
        layers.Dense(128, activation='relu'),
        layers.Dense(10, activation='softmax')
    ])
    model.compile(optimizer='adam', loss='categorical_crossentropy', metrics=['accuracy'])
    (x_train, y_train), (x_test, y_test) = data()
    x_train = x_train.astype('float32') / 255
    x_test = x_test.astype('float32') / 255
    y_train = utils.to_categorical(y_train, 10)
    y_test = utils.to_categorical(y_test, 10)
    model.fit(x_train, y_train, batch_size=64, epochs=epochs, validation_data=(x_test, y_test))
    return model.evaluate(x_test, y_test)


def native_style(epochs):
    from ember import nn

    model = nn.Sequential(
        nn.Conv2d(3, 32, 3), nn.ReLU(),
        nn.MaxPool2d(2),
        nn.Flatten(),
        nn.Linear(7200, 128), nn.ReLU(),
        nn.Linear(128, 10),  # logits: the loss applies the softmax
    )
    model.compile(optimizer="adam", loss="cross_entropy", metrics=["accuracy"])
    (x_train, y_train), (x_test, y_test) = data()
    to_nchw = ember.data.transforms.ToFloat(scale=1 / 255)
    x_train, x_test = (to_nchw(x.transpose(0, 3, 1, 2)) for x in (x_train, x_test))
    y_train, y_test = y_train[:, 0].astype(np.int64), y_test[:, 0].astype(np.int64)
    model.fit(x_train, y_train, batch_size=64, epochs=epochs, validation_data=(x_test, y_test))
    scores = model.evaluate(x_test, y_test)
    return [scores["loss"], scores["accuracy"]]


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--epochs", type=int, default=10)
    args = parser.parse_args()
    results = {}
    for name, run in (("keras style", keras_style), ("native style", native_style)):
        ember.manual_seed(0)
        print(f"== {name}")
        start = time.perf_counter()
        loss, accuracy = run(args.epochs)
        results[name] = (loss, accuracy, time.perf_counter() - start)
    for name, (loss, accuracy, seconds) in results.items():
        print(f"{name:>12}: test loss {loss:.4f}, accuracy {accuracy:.4f}, {seconds:.1f} s")


if __name__ == "__main__":
    main()
