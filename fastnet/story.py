"""The first chapter of the story, as short printable steps: one perceptron, then a tiny network.

`perceptron_story()` prints what happens and returns the numbers, so the
command-line demo can show it and a test can check it.
"""
import numpy as np

LOGIC_X = np.array([[0, 0], [0, 1], [1, 0], [1, 1]], dtype=np.float64)
GATES = {"AND": np.array([0, 0, 0, 1]), "OR": np.array([0, 1, 1, 1]), "XOR": np.array([0, 1, 1, 0])}


def _show_table(print, name, predictions):
    rows = "  ".join(f"{a}{b}->{p}" for (a, b), p in zip(LOGIC_X.astype(int), predictions))
    print(f"    {name:<3} {rows}")


def perceptron_story(print=print, seed=0):
    """Train a perceptron on AND, OR and XOR, then a 2-8-2 network on XOR; returns the accuracies."""
    import fastnet as fn

    results = {}
    print("1. One perceptron: output = step(w1*x1 + w2*x2 + b)")
    for gate in ("AND", "OR", "XOR"):
        p = fn.Perceptron(2, seed=seed).fit(LOGIC_X, GATES[gate], epochs=50, lr=0.1)
        accuracy = p.score(LOGIC_X, GATES[gate])
        results[f"perceptron_{gate.lower()}"] = accuracy
        w = ", ".join(f"{v:+.2f}" for v in p.weights)
        print(f"   {gate}: weights [{w}], bias {p.bias:+.2f}, {len(p.history_['errors'])} epochs, "
              f"accuracy {accuracy:.0%}")
        _show_table(print, gate, p.predict(LOGIC_X))
    print("   XOR is not linearly separable: no single line splits its 1s from its 0s,")
    print("   so one perceptron can never get all four right.")

    print("2. Two layers of perceptrons (2 -> 8 tanh -> 2) trained by gradient descent")
    net = fn.Network([fn.Dense(2, 8, activation="tanh"), fn.Dense(8, 2)], optimizer=fn.Adam(0.05), seed=seed)
    history = net.fit(LOGIC_X, GATES["XOR"], epochs=300, batch_size=4, verbose=0)
    accuracy = net.evaluate(LOGIC_X, GATES["XOR"])["accuracy"]
    results["network_xor"] = accuracy
    results["network_xor_loss"] = history.history["loss"][-1]
    print(f"   loss {history.history['loss'][0]:.3f} -> {history.history['loss'][-1]:.4f} in 300 epochs, "
          f"accuracy {accuracy:.0%}")
    _show_table(print, "XOR", net.predict(LOGIC_X))
    print("   The hidden layer bends the space so that a line can split XOR after all.")
    return results
