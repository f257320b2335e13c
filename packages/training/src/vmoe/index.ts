/**
 * The bridge to google-research/vmoe, browser-safe part (no Node imports): checkpoint readers
 * (partitioned V1/legacy, flax msgpack, npz) over byte sources (memory, Blob, URL), the config
 * mapping, import into `vmoe()` / `vit()`, and export to a V1 checkpoint. Node file access is in
 * `./node` and `./node-source`. Also published as `@tfjs-moe/training/vmoe`.
 */
export {CheckpointError, memorySource, blobSource, urlSource, urlOpener, BufferedReader} from './byte-source';
export type {ByteSource, SourceOpener} from './byte-source';
export {decodeValue, decodeDocument, decodeExt, decodeBin, readBin} from './msgpack';
export type {MsgValue, BinRef, ExtRef, DecodeOptions} from './msgpack';
export {encode, encodeParts, concatParts, Ext} from './encode';
export type {EncodableValue} from './encode';
export {toFloat32, fromFloat32, itemSize, sizeOf, copySlice} from './arrays';
export type {CheckpointArray, CheckpointArrays, CheckpointDType} from './arrays';
export {readPartitionedIndex, readPartitionedCheckpoint, shardName, decodeNdarray, SHARD_MARKER, V1_VERSION} from './partitioned';
export type {IndexLeaf, PartitionedIndex, ReadPartitionedOptions} from './partitioned';
export {readFlaxMsgpack, readNpz} from './single-file';
export {readCheckpointParams, checkpointFormat} from './checkpoint';
export type {CheckpointFormat, CheckpointParams} from './checkpoint';
export {vmoeConfigToTfjs, SUPPORTED_ROUTERS, UnsupportedRouterError} from './config';
export type {VMoEImportOptions, ImportedConfig} from './config';
export {expectedParams, checkParams, compareKeyPaths} from './param-tree';
export type {TreeSizes, ParamSpec} from './param-tree';
export {setModelWeights, modelParams} from './mapping';
export {importVMoE, buildFromArrays, treeSizes} from './import';
export type {ImportedModel} from './import';
export {exportVMoE, modelToVMoEConfig} from './export';
export type {VMoEExportOptions, VMoEExport} from './export';
