"""History: what happened during `fit`, epoch by epoch."""


class History:
    """Per-epoch records of a training run.

    `history` maps a name (loss, val_loss, accuracy, val_accuracy, time, ...)
    to a list with one value per epoch; `epoch` lists the epoch numbers
    (counting from the model's first ever epoch, so a resumed run continues).
    """

    def __init__(self):
        self.history = {}
        self.epoch = []

    def append(self, epoch, logs):
        """Record the logs of one finished epoch."""
        n_before = len(self.epoch)
        self.epoch.append(int(epoch))
        for key, value in logs.items():
            column = self.history.get(key)
            if column is None:  # a metric that appears late: earlier epochs get None
                column = self.history[key] = [None] * n_before
            column.append(value)
        for key, column in self.history.items():
            if len(column) < len(self.epoch):
                column.append(None)

    def __getitem__(self, key):
        return self.history[key]

    def __contains__(self, key):
        return key in self.history

    def __len__(self):
        return len(self.epoch)

    def last(self, key, default=None):
        column = self.history.get(key)
        return column[-1] if column else default

    def best(self, key="val_loss", mode="min"):
        """(epoch, value) of the best recorded value of `key`."""
        pairs = [(e, v) for e, v in zip(self.epoch, self.history.get(key, [])) if v is not None]
        if not pairs:
            raise KeyError(f"history has no values for {key!r}; recorded: {', '.join(self.history)}")
        pick = min if mode == "min" else max
        return pick(pairs, key=lambda pair: pair[1])

    def plot(self, path, metric=None):
        """Draw loss (and `metric`) per epoch, training vs validation, into an image file; returns the path."""
        from fastnet.plot import plot_history

        return plot_history(self, path, metric=metric)

    def to_dict(self):
        return {"epoch": list(self.epoch), "history": {k: list(v) for k, v in self.history.items()}}

    def __repr__(self):
        keys = ", ".join(self.history)
        return f"History({len(self.epoch)} epochs: {keys})"
