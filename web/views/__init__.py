"""Views of the customer pages, one module per page family. They parse input with a form, call one service or
a few selectors, and render; the rules live in the services."""
