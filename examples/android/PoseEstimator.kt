// Runs an edgepose TFLite artifact on Android with LiteRT's Interpreter API and returns keypoints in image
// pixels, through PoseDecoder (the rules of edgepose.processing). Gradle:
//     implementation("com.google.ai.edge.litert:litert:1.4.1")   // org.tensorflow.lite.Interpreter, minSdk 21
// Not compiled or run in this repository (no Android SDK here): PoseDecoder.kt is checked against edgepose
// on the JVM by tests/test_arm.py; this file only moves bytes between a Bitmap, PoseDecoder and LiteRT.
package org.edgepose.example

import android.graphics.Bitmap
import android.graphics.RectF
import org.tensorflow.lite.DataType
import org.tensorflow.lite.Interpreter
import java.io.File
import java.nio.ByteBuffer
import java.nio.ByteOrder

class PoseEstimator(
    modelFile: File,
    private val model: PoseModel,   // from read_artifact.py's JSON (or hard-coded from its printout)
    threads: Int = 4,
    private val flipTest: Boolean = true
) : AutoCloseable {
    // XNNPACK is LiteRT's default CPU delegate; it is what the INT8 artifacts are measured with.
    private val interpreter = Interpreter(modelFile, Interpreter.Options().setNumThreads(threads))
    private val input = interpreter.getInputTensor(0)
    private val output = interpreter.getOutputTensor(0)
    private val inBuf = ByteBuffer.allocateDirect(input.numBytes()).order(ByteOrder.nativeOrder())
    private val outBuf = ByteBuffer.allocateDirect(output.numBytes()).order(ByteOrder.nativeOrder())

    init {
        // edgepose's TFLite artifacts are NHWC: input [1, H, W, 3], output [1, H/4, W/4, K]
        val expectIn = intArrayOf(1, model.inputH, model.inputW, 3)
        val expectOut = intArrayOf(1, model.heatmapH, model.heatmapW, model.numKeypoints)
        require(input.shape().contentEquals(expectIn)) { "input ${input.shape().contentToString()}" }
        require(output.shape().contentEquals(expectOut)) { "output ${output.shape().contentToString()}" }
        // metadata input.kind uint8_nhwc_rgb: the tensor is uint8 and takes the crop's bytes as they are
        require(!model.uint8Input || input.dataType() == DataType.UINT8) { "uint8 input expected, got ${input.dataType()}" }
    }

    /** Keypoints [K][x, y, score] in [bitmap] pixels for one person [box] (from a person detector). */
    fun estimate(bitmap: Bitmap, box: RectF): Array<FloatArray> {
        val rgb = rgbBytes(bitmap)
        val cs = PoseDecoder.centerScale(box.left.toDouble(), box.top.toDouble(),
            box.width().toDouble(), box.height().toDouble(), model)
        var hm = run(rgb, bitmap, cs, mirror = false)
        if (flipTest) {
            hm = PoseDecoder.mergeFlip(hm, run(rgb, bitmap, cs, mirror = true), model)
        }
        return PoseDecoder.decode(hm, cs, model)
    }

    /** One pass: a uint8-input artifact gets the crop's bytes (no normalisation here), the others crop() floats. */
    private fun run(rgb: ByteArray, bitmap: Bitmap, cs: CenterScale, mirror: Boolean): FloatArray =
        if (model.uint8Input) inferBytes(PoseDecoder.cropBytes(rgb, bitmap.width, bitmap.height, cs, model, mirror))
        else infer(PoseDecoder.crop(rgb, bitmap.width, bitmap.height, cs, model, mirror))

    /** The crop's NHWC RGB bytes straight into a uint8 input tensor, NHWC heatmaps out (float). */
    private fun inferBytes(bytes: ByteArray): FloatArray {
        inBuf.rewind()
        inBuf.put(bytes)
        return runAndRead()
    }

    /** One normalised NHWC crop in, NHWC heatmaps out (float), whatever the tensors' dtypes. */
    private fun infer(x: FloatArray): FloatArray {
        inBuf.rewind()
        when (input.dataType()) {
            DataType.FLOAT32 -> for (v in x) inBuf.putFloat(v)
            DataType.INT8, DataType.UINT8 -> {  // q = clamp(round_half_even(x / scale) + zero_point)
                val q = input.quantizationParams()
                val (lo, hi) = if (input.dataType() == DataType.INT8) -128 to 127 else 0 to 255
                for (v in x) inBuf.put((Math.rint((v / q.scale).toDouble()).toInt() + q.zeroPoint).coerceIn(lo, hi).toByte())
            }
            else -> error("unsupported input type ${input.dataType()}")
        }
        return runAndRead()
    }

    private fun runAndRead(): FloatArray {
        inBuf.rewind()
        outBuf.rewind()
        interpreter.run(inBuf, outBuf)
        outBuf.rewind()
        val q = output.quantizationParams()
        return when (output.dataType()) {
            DataType.FLOAT32 -> FloatArray(output.numElements()) { outBuf.float }
            DataType.INT8 -> FloatArray(output.numElements()) { (outBuf.get().toInt() - q.zeroPoint) * q.scale }
            DataType.UINT8 -> FloatArray(output.numElements()) { ((outBuf.get().toInt() and 0xFF) - q.zeroPoint) * q.scale }
            else -> error("unsupported output type ${output.dataType()}")
        }
    }

    override fun close() = interpreter.close()

    companion object {
        /** The bitmap as R, G, B bytes per pixel, row-major (edgepose reads images as RGB too). */
        fun rgbBytes(bitmap: Bitmap): ByteArray {
            val px = IntArray(bitmap.width * bitmap.height)
            bitmap.getPixels(px, 0, bitmap.width, 0, 0, bitmap.width, bitmap.height)
            val out = ByteArray(px.size * 3)
            for (i in px.indices) {
                out[3 * i] = (px[i] shr 16).toByte()
                out[3 * i + 1] = (px[i] shr 8).toByte()
                out[3 * i + 2] = px[i].toByte()
            }
            return out
        }
    }
}
