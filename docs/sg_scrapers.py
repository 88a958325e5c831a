"""Image scraper of the example gallery (importable, so that Sphinx can pickle the config)."""


class TightMatplotlibScraper:
    """Matplotlib figures saved with ``bbox_inches="tight"`` (legends outside the axes)."""

    def __repr__(self):
        return self.__class__.__name__

    def __call__(self, *args, **kwargs):
        from sphinx_gallery.scrapers import matplotlib_scraper
        return matplotlib_scraper(*args, bbox_inches="tight", **kwargs)
