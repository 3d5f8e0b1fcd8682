"""The classic Keras CIFAR-10 program, written with Ember.

Conv2d(3, 32, 3) + ReLU -> MaxPool2d(2) -> Flatten -> Linear(7200, 128) + ReLU -> Linear(128, 10),
Adam, cross-entropy, batch 64, 10 epochs with random crops and flips, validation on the test set,
then the classification report.

    python examples/cifar10_cnn.py --data-dir ~/data/cifar-10-batches-py   # the real data set
    python examples/cifar10_cnn.py                                          # synthetic CIFAR-shaped data
    ember evaluate cifar10_cnn.safetensors --data-dir ~/data/cifar-10-batches-py   # the saved best model

The real files are the "python version" batches (data_batch_1 ... data_batch_5, test_batch).
"""

import argparse

import numpy as np

import ember
from ember import nn
from ember.callbacks import ModelCheckpoint
from ember.data import transforms as T

CLASSES = ["airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck"]


def load(data_dir):
    if data_dir:
        return ember.datasets.cifar10(data_dir)
    print("no --data-dir: training on synthetic CIFAR-shaped data")
    x, y = ember.datasets.synthetic(6000, shape=(3, 32, 32), classes=10, seed=0)
    x = np.clip(x * 40 + 128, 0, 255).astype(np.uint8)  # as 8-bit images
    return (x[:5000], y[:5000]), (x[5000:], y[5000:])


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data-dir", help="directory with the CIFAR-10 python batches")
    parser.add_argument("--epochs", type=int, default=10)
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--out", default="cifar10_cnn.safetensors")
    args = parser.parse_args()

    ember.manual_seed(0)
    (x_train, y_train), (x_test, y_test) = load(args.data_dir)

    # uint8 -> float in [0, 1] -> zero mean, unit variance per channel (statistics of the training set).
    to_float = T.ToFloat(scale=1 / 255)
    mean = to_float(x_train).mean(axis=(0, 2, 3))
    std = to_float(x_train).std(axis=(0, 2, 3))
    prep = T.Compose([to_float, T.Normalize(mean, std)])
    x_train, x_test = prep(x_train), prep(x_test)
    augment = T.Compose([T.RandomCrop((32, 32), padding=4), T.RandomHorizontalFlip()])

    model = nn.Sequential(
        nn.Conv2d(3, 32, 3), nn.ReLU(),
        nn.MaxPool2d(2),
        nn.Flatten(),
        nn.Linear(7200, 128), nn.ReLU(),
        nn.Linear(128, 10),
    )
    print(model)
    model.compile(optimizer="adam", lr=1e-3, loss="cross_entropy", metrics=["accuracy"])
    # The checkpoint records the model's architecture, and this config says how its inputs were made,
    # so that `ember evaluate` and `ember quantize` can use it as it is.
    config = {"dataset": "cifar10" if args.data_dir else "synthetic", "scale": 1 / 255,
              "mean": mean.tolist(), "std": std.tolist()}
    best = ModelCheckpoint(args.out, monitor="val_accuracy", save_best_only=True, config=config)
    model.fit(x_train, y_train, batch_size=args.batch_size, epochs=args.epochs, validation_data=(x_test, y_test),
              transform=augment, callbacks=[best])

    scores = model.evaluate(x_test, y_test)
    print(f"test loss {scores['loss']:.4f} - test accuracy {scores['accuracy']:.4f}")
    predicted = model.predict(x_test).argmax(axis=1)
    print(ember.metrics.classification_report(y_test, predicted, target_names=CLASSES, num_classes=10))
    print(f"best checkpoint: {args.out}")


if __name__ == "__main__":
    main()
