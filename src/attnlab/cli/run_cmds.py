"""Commands that use a trained run: generate, translate, attend, compare, explore, and the demo."""

from __future__ import annotations

import json
import sys
import time
import warnings
from pathlib import Path
from typing import List, Optional

import typer

from . import app
from .common import check_writable_dir, fail


def _show_warnings() -> None:
    """Library warnings (unknown words, truncation) as one plain line each on stderr."""
    warnings.showwarning = lambda message, *args, **kwargs: print(f"warning: {message}", file=sys.stderr)


@app.command()
def generate(
    run: Path = typer.Argument(..., help="run directory of a synthetic task"),
    sequence: str = typer.Argument(..., help="space-separated symbols, e.g. '3 1 4 1 5'"),
):
    """Run a synthetic-task model (copy, reverse, sort, add) on one input sequence.

    Example:

        attnlab generate runs/reverse "3 1 4 1 5"      # prints 5 1 4 1 3
    """
    from ..inspection.inference import Translator

    translator = Translator.load(run)
    unknown = translator.source.unknown_tokens(sequence)
    if unknown:
        vocabulary = [t for t in translator.source.tokens(range(translator.source.vocab_size)) if not t.startswith("<")]
        fail(f"unknown symbols {unknown}; this model reads: {' '.join(vocabulary)}")
    print(translator.translate([sequence])[0])


@app.command()
def translate(
    run: Path = typer.Argument(..., help="run directory"),
    text: Optional[str] = typer.Argument(None, help="sentence to translate; omit to read one per line from stdin"),
    beam: int = typer.Option(1, "--beam", "-k", help="beam size (1 = greedy)"),
    truncate: bool = typer.Option(False, "--truncate", help="cut over-long input (with a warning) instead of failing"),
    batch_size: int = typer.Option(32, help="sentences translated together when reading stdin"),
):
    """Translate a sentence, or every line of stdin.

    Examples:

        attnlab translate demo-output/run "the little cat sleeps ."

        attnlab translate runs/fra-eng --beam 4 < sentences.txt
    """
    from ..inspection.inference import Translator

    _show_warnings()
    translator = Translator.load(run, truncate=truncate)
    if text is not None:
        print(translator.translate([text], beam=beam)[0])
        return
    if sys.stdin.isatty():
        fail("give TEXT, or pipe sentences on stdin (one per line)")
    if batch_size < 1:
        fail(f"--batch-size must be >= 1, got {batch_size}")
    lines = [line.rstrip("\n") for line in sys.stdin]
    if not any(line.strip() for line in lines):
        fail("stdin had no sentences")
    for start in range(0, len(lines), batch_size):
        chunk = lines[start : start + batch_size]
        present = [line for line in chunk if line.strip()]
        outputs = iter(translator.translate(present, beam=beam)) if present else iter(())
        for line in chunk:  # an empty input line gives an empty output line: outputs stay aligned
            print(next(outputs) if line.strip() else "")


def parse_explain_option(value: str) -> list[str]:
    """``--explain rollout,ig`` → canonical method names (gxi = grad_x_input); ValueError lists the methods."""
    from ..inspection.explain import parse_methods

    return parse_methods([{"gxi": "grad_x_input"}.get(n.strip().lower(), n) for n in value.split(",")])


@app.command()
def attend(
    run: str = typer.Argument(..., help="run directory, or 'minilm' for the pretrained all-MiniLM-L6-v2"),
    text: str = typer.Argument(..., help="the sentence to look at"),
    out: Path = typer.Option(..., "--out", "-o", help="directory for attention.json, PNGs and attention.html"),
    target: Optional[str] = typer.Option(None, help="target sentence (teacher-forced); default: the model's own output"),
    beam: int = typer.Option(1, help="beam size used for the model's own output"),
    truncate: bool = typer.Option(False, "--truncate", help="cut over-long input instead of failing"),
    explain: Optional[str] = typer.Option(None, "--explain", help="also these explanation maps, comma-separated: "
                                          "raw, rollout, flow, grad_x_input (gxi), integrated_gradients (ig), "
                                          "value_norm"),
):
    """Write every attention map of one sentence: attention.json, PNG heatmaps, attention.html.

    Examples:

        attnlab attend demo-output/run "the little cat sleeps ." --out attn/

        attnlab attend demo-output/run "the little cat sleeps ." --explain rollout,ig --out attn/

        attnlab attend minilm "The animal didn't cross the street because it was too tired" --out attn-minilm/
    """
    from ..inspection.inference import load_analyzer
    from ..viz.outputs import write_attention_outputs

    _show_warnings()
    methods = parse_explain_option(explain) if explain is not None else None
    check_writable_dir(out)
    analyzer = load_analyzer(run, truncate=truncate)
    doc = analyzer(text, target, beam)
    if methods:
        from ..inspection.live import explanations_field

        doc["explanations"] = explanations_field(analyzer, doc, text, target, beam, methods)
    written = write_attention_outputs(doc, out, title=f"attnlab · {text[:60]}")
    if written.doc.get("translation"):
        print(f"translation: {written.doc['translation']}")
    print(f"wrote {written.json}, {written.html} and {len(written.figures)} heatmap grid(s) in {out}")
    print(f"open file://{written.html.resolve()} in a browser")


@app.command()
def compare(
    run_a: str = typer.Argument(..., help="first run directory (or 'minilm')"),
    run_b: str = typer.Argument(..., help="second run directory (or 'minilm')"),
    text: str = typer.Argument(..., help="the sentence both runs read"),
    out: Path = typer.Option(..., "--out", "-o", help="directory for compare.json and compare.html"),
    target: Optional[str] = typer.Option(None, help="target for both runs (teacher-forced); default: RUN_A's output"),
    beam: int = typer.Option(1, help="beam size of RUN_A's own output"),
    truncate: bool = typer.Option(False, "--truncate", help="cut over-long input instead of failing"),
):
    """Two runs side by side on one sentence: both views and a difference map (B − A) per kind and layer.

    Where the runs tokenize differently the maps are compared word by word (key pieces summed,
    query rows averaged).

    Examples:

        attnlab compare runs/toy-pe-sinusoidal runs/toy-pe-learned "the black dog slept ." --out cmp/

        attnlab compare runs/toy-2-blocks runs/toy-4-blocks "the cat eats ." --target "le chat mange ." --out cmp/
    """
    from ..inspection.inference import load_analyzer
    from ..viz.compare import compare_runs
    from ..viz.outputs import write_compare_outputs

    _show_warnings()
    check_writable_dir(out)
    if beam < 1:
        fail(f"--beam must be >= 1, got {beam}")
    analyzers = [load_analyzer(run, truncate=truncate) for run in (run_a, run_b)]
    payload = compare_runs(*analyzers, text, target, beam=beam, labels=[a.name for a in analyzers])
    written = write_compare_outputs(payload, out, title=f"attnlab compare · {text[:60]}")
    for label, translation in zip(payload["labels"], payload["translations"]):
        print(f"{label}: {translation}")
    print(f"{len(payload['differences'])} difference map(s) at {payload['level']} level; {payload['note']}")
    print(f"wrote {written.json} and {written.html}; open file://{written.html.resolve()} in a browser")


@app.command()
def explore(
    runs: List[str] = typer.Argument(..., help="run directory, or 'minilm'; two of them to compare live"),
    host: str = typer.Option("127.0.0.1", help="interface to bind (default: this machine only)"),
    port: int = typer.Option(8000, help="port"),
    open_browser: bool = typer.Option(False, "--open", help="open the page in a browser"),
):
    """Start the attention explorer: type a sentence, watch its attention, on http://127.0.0.1:PORT.

    With two runs, each sentence goes through both and the page shows both views and their difference.

    Examples:

        attnlab explore demo-output/run

        attnlab explore minilm --port 8001

        attnlab explore runs/toy-pe-sinusoidal runs/toy-pe-learned
    """
    from ..inspection.inference import load_analyzer
    from ..viz.explorer import create_app, serve

    if not 0 < port < 65536:
        fail(f"--port must be in 1..65535, got {port}")
    if len(runs) > 2:
        fail(f"explore takes one run, or two to compare; got {len(runs)}")
    from ..inspection.live import HeadAblation, supports_ablation

    analyzers = [load_analyzer(run) for run in runs]
    name = " vs ".join(a.name for a in analyzers)
    ablate = HeadAblation(analyzers[0].model) if len(analyzers) == 1 and supports_ablation(analyzers[0]) else None
    app_ = create_app(analyzers[0], title=f"attnlab explorer · {name}", info=analyzers[0].info, ablate=ablate,
                      compare_with=analyzers[1] if len(analyzers) == 2 else None,
                      labels=tuple(a.name for a in analyzers) if len(analyzers) == 2 else ("A", "B"))
    print(f"attnlab explorer for {name}: http://{host}:{port}/  (API docs: /docs; Ctrl-C to stop)",
          file=sys.stderr)
    serve(app_, host=host, port=port, open_browser=open_browser)


@app.command()
def demo(
    out: Path = typer.Option(Path("demo-output"), "--out", "-o", help="where the run, figures and page go"),
    sentence: Optional[str] = typer.Option(None, help="your own English sentence (toy vocabulary) to translate"),
    steps: Optional[int] = typer.Option(None, help="training steps (default: the toy preset)"),
    retrain: bool = typer.Option(False, "--retrain", help="train again even if OUT already has a trained run"),
    quiet: bool = typer.Option(False, "--quiet", "-q", help="no progress bar"),
):
    """The main job, offline: train a small English→French translator on the built-in toy corpus,
    report held-out BLEU, translate examples, and write attention heatmaps and the HTML page.

    Examples:

        attnlab demo

        attnlab demo --sentence "the old dogs do not eat the green apples ."
    """
    from ..data import TOY_EXAMPLES
    from ..inspection.inference import load_analyzer
    from ..training.config import RunConfig
    from ..viz.figures import plot_position_similarity, plot_positional_encoding, plot_training_curves
    from ..viz.outputs import write_attention_outputs

    _show_warnings()
    check_writable_dir(out)
    run_dir = out / "run"
    if sentence is not None and not sentence.strip():
        fail("--sentence is empty")
    trained = (run_dir / "eval.json").is_file() and (run_dir / "model.safetensors").is_file()
    if trained and not retrain:
        print(f"using the trained demo run in {run_dir} (pass --retrain to train again)", file=sys.stderr)
    else:
        from ..training.trainer import train as run_training

        if run_dir.exists():
            import shutil

            shutil.rmtree(run_dir)
        run_config = RunConfig.for_task("toy", **({"steps": steps} if steps else {}))
        print(f"training a {run_config.model.num_encoder_layers}+{run_config.model.num_decoder_layers}-block "
              f"Transformer (d_model {run_config.model.d_model}) on the built-in toy English→French corpus…",
              file=sys.stderr)
        started = time.perf_counter()
        run_training(run_dir, run_config, progress=not quiet)
        print(f"trained in {(time.perf_counter() - started) / 60:.1f} min", file=sys.stderr)

    results = json.loads((run_dir / "eval.json").read_text())
    print(f"\nheld-out test set ({results['num_examples']} sentences never seen in training): "
          f"BLEU {results['bleu']:.1f}, chrF {results['chrf']:.1f}, exact match {100 * results['exact_match']:.1f}%")

    analyzer = load_analyzer(str(run_dir))
    sentences = list(TOY_EXAMPLES) + ([sentence] if sentence else [])
    from ..inspection.inference import Translator

    translator = Translator.load(run_dir)
    print("\ntranslations:")
    for english, french in zip(sentences, translator.translate(sentences)):
        print(f"  {english}\n    → {french}")

    focus = sentence or TOY_EXAMPLES[0]
    written = write_attention_outputs(analyzer(focus), out / "attention", title=f"attnlab · {focus[:60]}")
    figures = [plot_training_curves(run_dir / "metrics.jsonl", out / "training_curves.png")]
    model = translator.model
    sinusoid = model.encoder.positional.encoding_matrix(40)
    if sinusoid is not None:
        figures.append(plot_positional_encoding(sinusoid.numpy(), out / "positional_encoding.png",
                                                title=f"{translator.run.config.model.pos_encoding} positional encoding"))
        figures.append(plot_position_similarity({translator.run.config.model.pos_encoding: sinusoid.numpy()},
                                                out / "position_similarity.png"))
    print(f"\nattention of “{focus}”:")
    print(f"  page (open in a browser): {written.html.resolve()}")
    for path in written.figures:
        print(f"  heatmaps: {path}")
    print(f"  data: {written.json}")
    for path in figures:
        print(f"  figure: {path}")
    print(f"\nnext: attnlab explore {run_dir}    (type your own sentence, watch the attention)")
    print(f"      attnlab translate {run_dir} \"the small cats do not like the red apples .\"")
