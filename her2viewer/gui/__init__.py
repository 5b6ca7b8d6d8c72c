"""Everything Qt: the slide viewer, its panels and windows (the only package importing PySide6).

* :mod:`~her2viewer.gui.tiles` - shared byte-bounded LRU tile cache and background loader
  (power-of-two virtual levels read from the slide's best pyramid level);
* :mod:`~her2viewer.gui.slideview` - the tile renderer with navigation, HUD and overlays;
* :mod:`~her2viewer.gui.sync` - panes in step through a level-0 transform or relatively;
* :mod:`~her2viewer.gui.panels` - minimap, layers panel with legend, slide properties;
* :mod:`~her2viewer.gui.mainwindow` / :mod:`~her2viewer.gui.app` - the window, theme,
  offscreen screenshots (the ``view`` verb itself is :mod:`her2viewer.cli.view`).
"""
