"""texturepose: open implementation of TexturePose (ICCV 2019).

Layers, top to bottom; a package imports only those below it (enforced by ``lint-imports``,
contracts in ``pyproject.toml``)::

    cli                      texturepose predict
    evaluation               metrics, protocols, the evaluate run, report
    inference                checkpoints applied to HDF5 sets, photos and videos
    training                 configs, factories, the step loop, checkpoints, DDP
    losses                   2D, heatmap, 3D, multi-view, texture, adversarial
    models | synthetic       networks | the embedded synthetic dataset
    mocap                    BVH, skeleton maps, body-model fitting, poses file
    datasets                 raw-dataset readers and fetching
    data                     HDF5 schema, writer/reader, codecs, training dataset, sampling, pairs
    body | render            body models behind BodyModel | rasteriser, textures, overlays
    geometry                 rotations, cameras, projections, crops
    keypoints                the keypoint superset, native orders, left/right mirror

Leaves beside them: ``files`` (atomic writes), ``rng`` (seeding, RNG state), ``tracking``
(the only MLflow user), ``params_schema`` (validated ``params.yaml``), ``provenance`` (the
code version written into files). The DVC stage scripts
in ``stages/`` sit on top.
"""

__version__ = "0.1.0"
