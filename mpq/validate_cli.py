"""`mico validate`: predicted vs measured whole-model latency over many deployed schemes."""

from __future__ import annotations


import click

from harness.cli import emit, param_option
from harness.documents import write_document
from harness.errors import UserError


@click.command("validate")
@click.option("--model", "model_name", default="lenet", show_default=True, help="Network to deploy.")
@click.option("--dataset", default="digits", show_default=True, help="Input size and calibration data.")
@click.option("--data-dir", type=click.Path(), default=None, help="Folder with the dataset's files (if not bundled).")
@click.option("--target", "target_name", required=True)
@click.option("--proxy", "proxy_path", type=click.Path(dir_okay=False), default=None,
              help="Latency proxy fitted on this target (without it: measurements only).")
@click.option("--schemes", "n_schemes", type=click.IntRange(min=0), default=16, show_default=True,
              help="Random schemes to deploy besides all-lowest and all-8x8.")
@click.option("--images", "n_images", type=click.IntRange(min=1), default=2, show_default=True,
              help="Inputs run per scheme (each checked bit-exact).")
@click.option("--seed", type=int, default=0, show_default=True)
@param_option()
@click.option("-o", "--output", type=click.Path(dir_okay=False), default=None, help="Write the validation JSON here.")
@click.option("--store", "store_path", type=click.Path(dir_okay=False), default=None,
              help="Also keep the validation in this results store (beside the kernels it was predicted from).")
@click.option("--cluster", default=None, metavar="local[:N] | tcp://HOST:PORT",
              help="Deploy the schemes on the workers of a Dask cluster, each with its own booted target "
                   "(docs/cluster.md), instead of one session here.")
@click.option("--no-progress", is_flag=True)
@click.option("--json", "as_json", is_flag=True)
def validate(model_name, dataset, data_dir, target_name, proxy_path, n_schemes, n_images, seed, params, output,
             store_path, cluster, no_progress, as_json):
    """Deploy random schemes plus all-lowest and all-8x8 and compare predicted with
    measured whole-model latency (MAPE, max |error|, Spearman rho), beside MiCo's
    two-point calibration.  Exits 1 if any run is not bit-exact."""
    from harness import registry

    from .datasets import load_dataset
    from .models import get_model
    from .validate import summary_text
    from .validate import validate as run_validate
    from .validate import validate_on_cluster

    if cluster is not None:
        from harness.cluster import parse_cluster

        parse_cluster(cluster)                  # a malformed address fails before any work
    latency_fn = None
    if proxy_path:
        from .cli import load_latency

        latency_fn, _, _ = load_latency(proxy_path)
    target = registry.get(target_name, **params)
    caps = target.capabilities()
    if not (caps.model_images or caps.ir_models):
        raise UserError(f"target {target_name} cannot run models (it only measures kernels).")
    ds = load_dataset(dataset, data_dir)
    model = get_model(model_name, dataset)
    progress = not no_progress and not as_json
    if cluster is not None:
        v = validate_on_cluster(model, model_name, ds, target_name, params, latency_fn, n_schemes, cluster, seed,
                                n_images, proxy_path, progress=progress)
    else:
        with target.session() as session:
            v = run_validate(model, model_name, ds, session, target, latency_fn, n_schemes, seed, n_images,
                             proxy_path, progress=progress)
    doc = v.to_dict()
    if output:
        write_document(output, doc, what="validation file")
    kept = ""
    if store_path:
        from harness.store import Store

        with Store(store_path) as st:
            rid = st.add_validation(doc)
        kept = f"\nkept as validation {rid} in {store_path}"
    emit(doc, as_json, summary_text(v) + (f"\nwrote {output}" if output else "") + kept)
    if not doc["summary"]["bit_exact"]:
        raise SystemExit(1)
