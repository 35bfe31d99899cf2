"""TensorRT 10's public Python names that Tandem does not implement, and the error they raise.

A script ported by changing ``import tensorrt as trt`` to ``import tandem as trt`` must not die
on a bare ``AttributeError``: an attribute TensorRT 10 has and Tandem lacks raises
:class:`UnsupportedApiError` naming the TensorRT call and what to use instead. The error is
also an ``AttributeError``, so ``hasattr(config, "...")`` feature checks still answer False.

The names are TensorRT 10.3's (JetPack 6), from its Python API reference:
https://docs.nvidia.com/deeplearning/tensorrt/10.3.0/_static/python-api/ (infer/Core/
Builder.html, BuilderConfig.html, Network.html, Engine.html, ExecutionContext.html,
Runtime.html; infer/Graph/LayerBase.html; parsers/Onnx/pyOnnx.html). Names Tandem implements
are filtered out by the lookup itself (``__getattr__`` runs only for missing attributes).
"""

from __future__ import annotations

from typing import Any

from partitioner.errors import TandemError


class UnsupportedApiError(TandemError, AttributeError):
    """A TensorRT API Tandem does not implement; the message says what to use instead."""


def _names(text: str) -> frozenset[str]:
    return frozenset(text.split())


#: TensorRT 10 name -> its public attribute names, per API object (``tensorrt`` = the module)
TRT10_NAMES: dict[str, frozenset[str]] = {
    "tensorrt": _names("""
        Builder BuilderFlag IBuilderConfig INetworkDefinition ILayer ITensor ICudaEngine
        IExecutionContext Runtime Refitter OnnxParser OnnxParserRefitter Logger ILogger
        IProfiler IOutputAllocator IGpuAllocator IGpuAsyncAllocator IStreamReader
        IStreamWriter IInt8Calibrator IInt8EntropyCalibrator IInt8EntropyCalibrator2
        IInt8MinMaxCalibrator IInt8LegacyCalibrator CalibrationAlgoType IAlgorithmSelector
        IAlgorithm IAlgorithmContext IAlgorithmIOInfo IAlgorithmVariant IProgressMonitor
        IDebugListener IErrorRecorder ErrorCode ITimingCache IEngineInspector
        IOptimizationProfile ISerializationConfig SerializationFlag IRuntimeConfig
        ExecutionContextAllocationStrategy DataType LayerType TensorIOMode TensorLocation
        TensorFormat TensorRTPhase TacticSource PreviewFeature HardwareCompatibilityLevel
        RuntimePlatform MemoryPoolType ProfilingVerbosity EngineCapability DeviceType
        NetworkDefinitionCreationFlag QuantizationFlag LayerInformationFormat WeightsRole
        Weights Dims Dims2 Dims3 Dims4 DimsHW DimsExprs IDimensionExpr IExprBuilder
        DimensionOperation ActivationType PoolingType ElementWiseOperation MatrixOperation
        UnaryOperation ReduceOperation PaddingMode ScaleMode TopKOperation ResizeMode
        InterpolationMode ResizeCoordinateTransformation ResizeSelector ResizeRoundMode
        SampleMode FillOperation GatherMode ScatterMode LoopOutput TripLimit BoundingBoxFormat
        CumulativeOperation PluginField PluginFieldCollection PluginFieldType IPluginCreator
        IPluginCreatorV3One IPluginV2 IPluginV2Ext IPluginV3 IPluginRegistry PluginCapabilityType
        IPluginResourceContext get_plugin_registry get_builder_plugin_registry
        nptype volume bool float16 float32 int8 int32 int64 uint8 bfloat16 fp8 int4 fp4
        OnnxParserFlag ParserError ErrorCodeTRT get_nv_onnx_parser_version __version__
    """),
    "IBuilder": _names("""
        create_network create_builder_config create_optimization_profile
        build_serialized_network build_engine_with_config build_serialized_network_to_stream
        is_network_supported platform_has_fast_fp16 platform_has_fast_int8
        platform_has_tf32 max_DLA_batch_size num_DLA_cores gpu_allocator error_recorder
        logger max_threads get_plugin_registry reset
    """),
    "IBuilderConfig": _names("""
        set_flag clear_flag get_flag flags set_memory_pool_limit get_memory_pool_limit
        profiling_verbosity engine_capability default_device_type DLA_core
        set_device_type get_device_type reset_device_type is_device_type_set
        can_run_on_DLA int8_calibrator profile_stream add_optimization_profile
        num_optimization_profiles
        set_calibration_profile get_calibration_profile create_timing_cache set_timing_cache
        get_timing_cache set_tactic_sources get_tactic_sources set_preview_feature
        get_preview_feature algorithm_selector avg_timing_iterations builder_optimization_level
        hardware_compatibility_level max_aux_streams plugins_to_serialize progress_monitor
        runtime_platform set_quantization_flag clear_quantization_flag get_quantization_flag
        quantization_flags max_num_tactics tiling_optimization_level l2_limit_for_tiling
        reset
    """),
    "INetworkDefinition": _names("""
        name num_layers num_inputs num_outputs get_layer get_input get_output add_input
        mark_output unmark_output remove_tensor mark_debug unmark_debug is_debug_tensor
        mark_output_for_shapes unmark_output_for_shapes has_implicit_batch_dimension
        error_recorder builder flags get_flag add_activation add_assertion add_cast
        add_concatenation add_constant add_convolution_nd add_cumulative add_deconvolution_nd
        add_dequantize add_dynamic_quantize add_einsum add_elementwise add_fill add_gather
        add_gather_v2 add_grid_sample add_identity add_if_conditional add_loop add_lrn
        add_matrix_multiply add_nms add_non_zero add_normalization add_one_hot
        add_padding_nd add_parametric_relu add_plugin add_plugin_v2 add_plugin_v3
        add_pooling_nd add_quantize add_ragged_softmax add_reduce add_resize
        add_reverse_sequence add_scale add_scale_nd add_scatter add_select add_shape
        add_shuffle add_slice add_softmax add_squeeze add_topk add_unary add_unsqueeze
        set_weights_name
    """),
    "ILayer": _names("""
        name type num_inputs num_outputs get_input get_output set_input precision
        precision_is_set reset_precision set_output_type get_output_type
        output_type_is_set reset_output_type metadata
    """),
    "ITensor": _names("""
        name shape dtype is_network_input is_network_output is_shape_tensor
        is_execution_tensor allowed_formats broadcast_across_batch dynamic_range
        set_dynamic_range reset_dynamic_range get_dynamic_range location set_dimension_name
        get_dimension_name
    """),
    "ICudaEngine": _names("""
        num_io_tensors get_tensor_name get_tensor_mode get_tensor_shape get_tensor_dtype
        get_tensor_location get_tensor_format get_tensor_format_desc get_tensor_bytes_per_component
        get_tensor_components_per_element get_tensor_vectorized_dim is_shape_inference_io
        get_tensor_profile_shape get_tensor_profile_values num_optimization_profiles
        num_layers device_memory_size device_memory_size_v2 get_device_memory_size_for_profile
        get_device_memory_size_for_profile_v2 streamable_weights_size weight_streaming_budget
        weight_streaming_budget_v2 minimum_weight_streaming_budget
        weight_streaming_scratch_memory_size refittable name engine_capability
        has_implicit_batch_dimension hardware_compatibility_level num_aux_streams
        profiling_verbosity tactic_sources error_recorder serialize serialize_with_config
        create_serialization_config create_execution_context
        create_execution_context_without_device_memory create_engine_inspector
        create_runtime_config is_debug_tensor get_weight_streaming_automatic_budget
    """),
    "IExecutionContext": _names("""
        engine name debug_sync profiler error_recorder active_optimization_profile
        set_optimization_profile_async device_memory set_device_memory
        update_device_memory_size_for_shapes set_input_shape get_tensor_shape
        get_tensor_strides set_tensor_address get_tensor_address set_input_consumed_event
        get_input_consumed_event set_output_allocator get_output_allocator
        get_max_output_size all_binding_shapes_specified all_shape_inputs_specified
        infer_shapes execute_v2 execute_async_v3 enqueue_emits_profile report_to_profiler
        persistent_cache_limit nvtx_verbosity set_aux_streams set_debug_listener
        get_debug_listener set_tensor_debug_state get_debug_state set_all_tensors_debug_state
        set_output_allocator set_shape_input get_shape_input unfused_tensors_debug_state
    """),
    "Runtime": _names("""
        deserialize_cuda_engine num_DLA_cores DLA_core gpu_allocator error_recorder logger
        max_threads temporary_directory tempfile_control_flags engine_host_code_allowed
        load_runtime get_plugin_registry
    """),
    "OnnxParser": _names("""
        parse parse_with_weight_descriptors parse_from_file supports_model
        supports_model_v2 supports_operator num_errors get_error clear_errors flags set_flag
        clear_flag get_flag get_used_vc_plugin_libraries get_layer_output_tensor
        num_subgraphs is_subgraph_supported get_subgraph_nodes load_model_proto
        load_initializer parse_model_proto
    """),
}

#: what to use instead, for the calls a ported script meets most (others get a generic hint)
ALTERNATIVES: dict[str, str] = {
    "build_engine_with_config": "build_serialized_network(network, config), then "
    "Runtime().deserialize_cuda_engine(bytes)",
    "IAlgorithmSelector": "a timing cache (config.set_timing_cache) picks tactics",
    "IInt8MinMaxCalibrator": "tandem.IInt8EntropyCalibrator2 (Tandem calibrates with "
    "EntropyCalibrator2, as the DLA's INT8 path does)",
    "IInt8LegacyCalibrator": "tandem.IInt8EntropyCalibrator2",
    "IInt8EntropyCalibrator": "tandem.IInt8EntropyCalibrator2",
    "set_output_allocator": "static or profile-bounded outputs with set_tensor_address, or "
    "context.execute(feeds), which returns arrays of the actual shapes",
    "add_plugin_v2": "a plugin registered on tandem.get_plugin_registry() used by an ONNX op",
    "add_plugin_v3": "a plugin registered on tandem.get_plugin_registry() used by an ONNX op",
    "set_dynamic_range": "an INT8 calibrator (config.int8_calibrator) or a Q/DQ (QAT) model, "
    "whose scales Tandem takes",
}


#: TensorRT 8 names that TensorRT 10 removed (its 10.0 release notes' "API changes"), met in
#: older scripts: the same AttributeError TensorRT 10 gives, with the replacement named
REMOVED_IN_10: dict[str, str] = {
    "build_engine": "build_serialized_network(network, config)",
    "max_workspace_size": "config.set_memory_pool_limit(MemoryPoolType.WORKSPACE, size)",
    "num_bindings": "engine.num_io_tensors",
    "get_binding_name": "engine.get_tensor_name(i)",
    "get_binding_shape": "engine.get_tensor_shape(name) / context.get_tensor_shape(name)",
    "get_binding_dtype": "engine.get_tensor_dtype(name)",
    "binding_is_input": "engine.get_tensor_mode(name) == TensorIOMode.INPUT",
    "set_binding_shape": "context.set_input_shape(name, shape)",
    "execute_async_v2": "context.set_tensor_address(name, ptr) per tensor, then "
    "execute_async_v3(stream)",
}


def missing(api: str, name: str) -> AttributeError:
    """The error for attribute ``name`` missing on API object ``api``: an
    :class:`UnsupportedApiError` when TensorRT 10 has it (or removed it, naming the
    replacement), else a plain ``AttributeError``."""
    if name in REMOVED_IN_10:
        return UnsupportedApiError(
            f"{api}.{name} was removed in TensorRT 10 (Tandem follows TensorRT 10); use "
            f"{REMOVED_IN_10[name]}"
        )
    if name.startswith("_") or name not in TRT10_NAMES.get(api, frozenset()):
        return AttributeError(f"'{api}' object has no attribute {name!r}")
    call = f"{api}.{name}" if api != "tensorrt" else f"tensorrt.{name}"
    instead = ALTERNATIVES.get(name, "see README 'Python API' for what Tandem implements")
    return UnsupportedApiError(
        f"{call} (TensorRT 10) is not implemented by Tandem; instead: {instead}"
    )


class TrtApi:
    """Mixin: missing attributes that TensorRT 10 has raise :class:`UnsupportedApiError`; and
    ``with trt.Builder(logger) as builder, ...:`` works, as in TensorRT scripts (nothing to
    release early: Python frees these objects)."""

    _trt_api = "tensorrt"

    def __getattr__(self, name: str) -> Any:
        raise missing(type(self)._trt_api, name)

    def __enter__(self) -> Any:
        return self

    def __exit__(self, *exc: object) -> None:
        return None
