"""The wizard's pages, one module each, in the order a person meets them."""
