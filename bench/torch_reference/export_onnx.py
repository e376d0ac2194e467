#!/usr/bin/python3
"""bench/torch_reference/export_onnx.py — PyTorch's ONNX export of a parity model, for comparison
with `parity export`.

Builds the torch module of a parity model description (parity_models.LayerNet; the file
`parity export --description` writes), loads parity's weights into it (a safetensors file with the
state_dict names parity uses, e.g. from `parity export --save-weights`, `parity train --save`),
puts it in eval mode and runs torch.onnx.export at opset 13 with input "x" and output "logits",
both with the dynamic batch axis "batch". By default the export keeps the module's own (eval)
graph, training=TrainingMode.PRESERVE: batch norms stay BatchNormalization nodes and the
initializers keep the state_dict names (except that torch 1.13 stores tensors of equal values once
and reads the others through Identity nodes named after them: the batch norms of untrained
weights, all ones and zeros). --eval exports with TrainingMode.EVAL instead, where
torch's own passes run (in torch 1.13 they fold each batch norm into the convolution before it, so
the initializers are renamed and the numbers rounded differently). The file is then checked with
onnx.checker.check_model(full_check=True) when python3-onnx is installed.

  parity export --model resnet8 --seed 1 --onnx parity.onnx --description resnet8.json \\
      --save-weights resnet8.safetensors
  /usr/bin/python3 bench/torch_reference/export_onnx.py --description resnet8.json \\
      --weights resnet8.safetensors --onnx torch.onnx

Needs Debian's python3-torch and python3-numpy (only /usr/bin/python3 sees them).
"""
import argparse
import os
import sys
import warnings

import torch

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from parity_models import LayerNet, load_parity_weights, read_model_description, read_safetensors  # noqa: E402

OPSET = 13


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--description", required=True, help="the model description JSON (parity export --description)")
    ap.add_argument("--weights", required=True, help="safetensors with parity's (state_dict) names")
    ap.add_argument("--onnx", required=True, help="the ONNX file to write")
    ap.add_argument("--eval", action="store_true",
                    help="export with training=TrainingMode.EVAL (torch's eval passes: batch norms folded into convs) "
                         "instead of TrainingMode.PRESERVE of the module in eval mode")
    a = ap.parse_args()

    try:
        model = LayerNet(read_model_description(a.description))
        load_parity_weights(model, read_safetensors(a.weights), a.weights)
    except (OSError, ValueError, KeyError) as e:
        raise SystemExit(f"export_onnx.py: {e}")
    model.eval()
    channels, height, width = model.input_shape
    example = torch.zeros(2, channels, height, width)
    mode = torch.onnx.TrainingMode.EVAL if a.eval else torch.onnx.TrainingMode.PRESERVE
    # torch warns against constant folding with PRESERVE for a module in training mode, whose
    # parameters folding could change; this one is in eval mode.
    warnings.filterwarnings("ignore", message="It is recommended that constant folding be turned off")
    # Written beside the target, then renamed: a reader never sees half a file.
    temporary = a.onnx + ".tmp"
    try:
        with torch.no_grad():
            torch.onnx.export(model, example, temporary, opset_version=OPSET, training=mode, input_names=["x"],
                              output_names=["logits"], dynamic_axes={"x": {0: "batch"}, "logits": {0: "batch"}},
                              export_params=True, keep_initializers_as_inputs=False)
        os.replace(temporary, a.onnx)
    except OSError as e:
        raise SystemExit(f"export_onnx.py: cannot write {a.onnx}: {e}")
    finally:
        if os.path.exists(temporary):
            os.remove(temporary)

    checked = "not checked (python3-onnx is not installed)"
    try:
        import onnx
    except ImportError:
        onnx = None
    if onnx is not None:
        onnx.checker.check_model(a.onnx, full_check=True)
        graph = onnx.load(a.onnx).graph
        checked = (f"{len(graph.node)} nodes, {len(graph.initializer)} initializers; "
                   f"onnx.checker (full_check) accepts it")
    print(f"wrote {a.onnx}: {model.name} exported by torch {torch.__version__} at opset {OPSET}, "
          f"training={mode.name}, input x [batch,{channels},{height},{width}], output logits; {checked}")


if __name__ == "__main__":
    main()
