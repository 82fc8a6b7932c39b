"""Stand-ins for the search tests: a trainer whose accuracy is a function of the spec and
the seed, and the trial number in a sampled spec's name."""


def fake_train(acc_of):
    """A stand-in for scaling.train.train: validation accuracy ``acc_of(spec, seed)`` at every
    epoch (pruned when the callback says so); counts its calls."""
    from scaling.train import TrainResult

    calls = []

    def train(spec, data, *, epochs=None, callback=None, seed=0, **kw):
        calls.append((spec.name, seed))
        acc, history = acc_of(spec, seed), []
        for epoch in range(1, int(epochs) + 1):
            history.append({"val_top1": acc})
            if callback is not None and callback(epoch, {"val_top1": acc}) is False:
                return TrainResult(status="pruned", history=history, best_val_top1=acc,
                                   final_val_top1=None, images_per_s=1.0, train_time=1.0,
                                   wall_time=1.0, samples=10, steps=1, device="cpu", amp=None,
                                   channels_last=False, config={})
        return TrainResult(status="ok", history=history, best_val_top1=acc, final_val_top1=acc,
                           images_per_s=1.0, train_time=1.0, wall_time=1.0, samples=10,
                           steps=1, device="cpu", amp=None, channels_last=False, config={})

    train.calls = calls
    return train


def trial_number(spec):
    return int(spec.name.rsplit("-", 1)[1]) if spec.name.startswith("search-") else -1
