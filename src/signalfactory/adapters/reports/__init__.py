"""Reports people look at rather than read: self-contained HTML pages with charts."""
