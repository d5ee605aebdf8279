"""Starting LIT: `serve` runs a LIT server, `LITWidget` one inside a notebook. Both accept
HookedTransformers (wrapped in HookedTransformerLIT) and our datasets (copied into LIT
Datasets where they are not ones already). Both need lit-nlp."""

import inspect
import logging
import os
from typing import Any

from transformer_lens.HookedTransformer import HookedTransformer
from transformer_lens.lit._lit_api import lit_module
from transformer_lens.lit.constants import SERVER_CONFIG
from transformer_lens.lit.dataset import wrap_for_lit
from transformer_lens.lit.model import HookedTransformerLIT

logger = logging.getLogger(__name__)


def _as_lit_model(model: Any) -> Any:
    return HookedTransformerLIT(model) if isinstance(model, HookedTransformer) else model


def lit_models(models: dict[str, Any] | Any) -> dict[str, Any]:
    """Name -> LIT model; a single model is named "model"."""
    named = models if isinstance(models, dict) else {"model": models}
    return {name: _as_lit_model(model) for name, model in named.items()}


def lit_datasets(datasets: dict[str, Any] | Any, purpose: str) -> dict[str, Any]:
    """Name -> LIT Dataset; a single dataset is named "dataset"."""
    lit_dataset = lit_module("api.dataset", purpose)
    named = datasets if isinstance(datasets, dict) else {"dataset": datasets}
    return {
        name: data if isinstance(data, lit_dataset.Dataset) else wrap_for_lit(data)
        for name, data in named.items()
    }


def serve(
    models: dict[str, Any] | Any,
    datasets: dict[str, Any] | Any,
    port: int = SERVER_CONFIG.DEFAULT_PORT,
    host: str = SERVER_CONFIG.DEFAULT_HOST,
    page_title: str = SERVER_CONFIG.DEFAULT_TITLE,
    **kwargs: Any,
) -> None:
    """Serve LIT on http://host:port until interrupted. `models` and `datasets` are dicts
    by name, or a single one; other kwargs go to lit_nlp.dev_server.Server."""
    named_datasets = lit_datasets(datasets, "serve")
    dev_server = lit_module("dev_server", "serve")
    layout = lit_module("api.layout", "serve")
    kwargs.setdefault("layouts", layout.DEFAULT_LAYOUTS)
    kwargs.setdefault("default_layout", "default")
    # The prebuilt web client that ships inside the lit-nlp package.
    client_root = os.path.join(
        os.path.dirname(inspect.getfile(dev_server)), "client", "build", "default"
    )
    server = dev_server.Server(
        lit_models(models),
        named_datasets,
        port=port,
        host=host,
        page_title=page_title,
        client_root=client_root,
        **kwargs,
    )
    logger.info("Starting LIT server at http://%s:%s", host, port)
    server.serve()


class LITWidget:
    """LIT in a notebook cell: starts a server in the background; render() shows it."""

    def __init__(
        self, models: dict[str, Any], datasets: dict[str, Any], height: int = 800, **kwargs: Any
    ):
        """Start the server; other kwargs go to lit_nlp.notebook.LitWidget (its own layout
        choice wins over a default_layout)."""
        named_datasets = lit_datasets(datasets, "LITWidget")
        notebook = lit_module("notebook", "LITWidget")
        kwargs.pop("default_layout", None)
        self._widget = notebook.LitWidget(
            lit_models(models), named_datasets, height=height, render=False, **kwargs
        )

    @property
    def url(self) -> str:
        """Where the server listens; open it by hand where cells cannot show iframes."""
        return f"http://localhost:{self._widget._server.port}"

    def render(self, open_in_new_tab: bool = False, **kwargs: Any) -> None:
        """Show LIT in the output cell (or a new browser tab)."""
        self._widget.render(open_in_new_tab=open_in_new_tab, **kwargs)

    def stop(self) -> None:
        """Stop the server."""
        self._widget.stop()
