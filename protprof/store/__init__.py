"""The profile store and what is kept beside it: the Zarr store itself (`zarr_store`), the
per-query cache, the reuse records a store carries, an imported store's sources table, and the
format versions of the small files written beside stores."""
