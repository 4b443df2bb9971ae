"""Searching queries into a store: database chunks searched as separate jobs (`chunked`),
family-scale search with pools and family HMMs (`family`), the journal that lets an interrupted
search resume (`journal`), and searched queries written as store parts (`to_store`). The
jackhmmer engine itself is `protprof.jackhmmer`."""
