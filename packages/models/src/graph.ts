/**
 * Rebuilds a functional tfjs model with some of its layers swapped for new ones, through the
 * model's own serialized config, so the result is an ordinary `tf.LayersModel` that saves and
 * loads like any other. Weights of the layers that stay are copied; new layers get an `init`
 * callback to fill theirs.
 */
import * as tf from '@tensorflow/tfjs';
import {ConfigError} from '@tfjs-moe/router';

/** One layer swap for {@link replaceLayers}. */
export interface LayerReplacement {
  /** The new layer, not yet built or applied; it takes the old layer's place and inputs. */
  layer: tf.layers.Layer;
  /**
   * Called once the new model is built, with the new layer (as it lives in the new model) and the
   * old one, to set the new layer's weights. When omitted the new layer keeps its initial weights.
   */
  init?: (newLayer: tf.layers.Layer, oldLayer: tf.layers.Layer) => void;
  /**
   * To replace a chain of layers `first -> ... -> old` by one layer: the name of `first`, whose
   * inputs the new layer takes. Default: the replaced layer's own inputs.
   */
  inputsFrom?: string;
  /**
   * Layers to drop from the model (the rest of the chain). Each may feed only other dropped
   * layers or the replaced layer, and none may be a model output.
   */
  remove?: string[];
}

type NodeData = [string, number, number, Record<string, unknown>?];
interface LayerEntry {
  name: string;
  className: string;
  config: tf.serialization.ConfigDict;
  inboundNodes: NodeData[][];
}

/**
 * Returns a new functional model in which each layer named in `replacements` is replaced by the
 * given layer, wired to the same inputs and feeding the same consumers (a new layer may carry a
 * new name). Every other layer is re-created from its config and gets a copy of its weights; the
 * source model is left untouched. Works for models made by `tf.model` whose layers are all
 * serializable (registered with `tf.serialization.registerClass`).
 *
 * @param model source model `tf.model({inputs, outputs})` (a `tf.Sequential` is not supported)
 * @param replacements map from old layer name to its {@link LayerReplacement}
 * @param name name of the new model (default: the source model's name)
 * @example
 * ```ts
 * const wider = replaceLayers(vit('mnist-tiny'), new Map([
 *   ['block0_mlp', {layer: mlpBlock({hiddenDim: 256, name: 'block0_mlp'})}],
 * ]));
 * ```
 */
export function replaceLayers(
  model: tf.LayersModel,
  replacements: ReadonlyMap<string, LayerReplacement>,
  name?: string,
): tf.LayersModel {
  const context = 'replaceLayers';
  if (!(model instanceof tf.LayersModel) || model instanceof tf.Sequential) {
    throw new ConfigError('model', 'a functional tf.LayersModel (built with tf.model)', model?.getClassName?.() ?? model, context);
  }
  const config = JSON.parse(JSON.stringify(model.getConfig())) as {
    name: string;
    layers: LayerEntry[];
    inputLayers: NodeData[];
    outputLayers: NodeData[];
  };
  const renamed = new Map<string, string>();
  const existing = new Set(config.layers.map((l) => l.name));
  const byName = new Map(config.layers.map((l) => [l.name, l]));
  const removed = new Set<string>();
  for (const [oldName, {layer, inputsFrom, remove}] of replacements) {
    if (!existing.has(oldName)) {
      throw new ConfigError('replacements', `names of layers of model "${model.name}"`, oldName, context);
    }
    for (const r of [...(remove ?? []), ...(inputsFrom === undefined ? [] : [inputsFrom])]) {
      if (!existing.has(r)) throw new ConfigError('remove', `names of layers of model "${model.name}"`, r, context);
    }
    (remove ?? []).forEach((r) => removed.add(r));
    if (layer.name !== oldName && existing.has(layer.name)) {
      throw new ConfigError('layer name', `a name not already used in model "${model.name}"`, layer.name, context);
    }
    renamed.set(oldName, layer.name);
  }
  const rename = (n: string) => renamed.get(n) ?? n;
  for (const entry of config.layers) {
    if (removed.has(entry.name)) continue;
    const chainInputs = replacements.get(entry.name)?.inputsFrom;
    const inputs = chainInputs === undefined ? entry.inboundNodes : byName.get(chainInputs)!.inboundNodes;
    const bad = inputs.flat().find((d) => removed.has(d[0]));
    if (bad) {
      throw new ConfigError('remove', `layers that feed only the replaced chain (${entry.name} reads it)`, bad[0], context);
    }
  }
  const outputs = config.outputLayers.find((d) => removed.has(d[0]));
  if (outputs) throw new ConfigError('remove', 'layers that are not model outputs', outputs[0], context);
  config.layers = config.layers.filter((entry) => !removed.has(entry.name)).map((entry) => {
    const swap = replacements.get(entry.name);
    const source = swap?.inputsFrom === undefined ? entry : byName.get(swap.inputsFrom)!;
    const inboundNodes = source.inboundNodes.map((node) => node.map((d) => [rename(d[0]), ...d.slice(1)] as NodeData));
    if (!swap) return {...entry, inboundNodes};
    const layerConfig = JSON.parse(JSON.stringify(swap.layer.getConfig())) as tf.serialization.ConfigDict;
    return {name: swap.layer.name, className: swap.layer.getClassName(), config: layerConfig, inboundNodes};
  });
  config.inputLayers = config.inputLayers.map((d) => [rename(d[0]), ...d.slice(1)] as NodeData);
  config.outputLayers = config.outputLayers.map((d) => [rename(d[0]), ...d.slice(1)] as NodeData);
  config.name = name ?? config.name;
  const rebuilt = tf.LayersModel.fromConfig(
    tf.LayersModel, config as unknown as tf.serialization.ConfigDict,
  ) as unknown as tf.LayersModel;
  for (const layer of model.layers) {
    const swap = replacements.get(layer.name);
    if (swap) {
      swap.init?.(rebuilt.getLayer(rename(layer.name)), layer);
    } else if (layer.weights.length > 0 && !removed.has(layer.name)) {
      const weights = layer.getWeights();
      rebuilt.getLayer(layer.name).setWeights(weights);
    }
  }
  return rebuilt;
}
