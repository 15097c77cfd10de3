// Pre- and post-processing of an edgepose top-down heatmap model, in plain Kotlin (no Android classes), the
// same rules as edgepose.processing (mmpose 0.x's test pipeline): box -> centre/scale, affine crop,
// normalisation (not for uint8-input artifacts: they take the crop's bytes), flip-test merge, 'default' heatmap
// decoding. PoseEstimator.kt feeds LiteRT with it.
// Every number comes from the artifact's metadata: `python examples/android/read_artifact.py MODEL.tflite`.
package org.edgepose.example

/** The facts of one artifact (read_artifact.py prints them; `--json` writes them as an asset). */
class PoseModel(
    val inputW: Int, val inputH: Int,          // input_size (W, H), e.g. 192 x 256
    val numKeypoints: Int,                     // 17 for COCO
    val mean: FloatArray = floatArrayOf(123.675f, 116.28f, 103.53f),  // RGB, 0..255 scale
    val std: FloatArray = floatArrayOf(58.395f, 57.12f, 57.375f),
    val boxPadding: Double = 1.25,
    val flipPairs: Array<IntArray> = emptyArray(),  // COCO: [1,2],[3,4],...,[15,16]
    val shiftHeatmap: Boolean = true,
    // metadata input.kind "uint8_nhwc_rgb" (edgepose convert --input uint8): the model takes the crop's bytes and
    // normalises inside; "float_nchw_normalized" (the default): feed crop() floats
    val uint8Input: Boolean = false
) {
    val heatmapW get() = inputW / 4
    val heatmapH get() = inputH / 4
}

/** Box centre and scale in mmpose's units (scale = size / 200), as edgepose.processing.box_to_center_scale. */
class CenterScale(val cx: Float, val cy: Float, val sw: Float, val sh: Float)

object PoseDecoder {
    const val PIXEL_STD = 200.0

    fun centerScale(x: Double, y: Double, w0: Double, h0: Double, model: PoseModel): CenterScale {
        val aspect = model.inputW.toDouble() / model.inputH
        var w = w0
        var h = h0
        if (w > aspect * h) h = w / aspect else if (w < aspect * h) w = h * aspect
        val pad = model.boxPadding.toFloat()
        // float32 rounding order as mmpose: float32(w / 200) * float32(padding)
        return CenterScale((x + w0 * 0.5).toFloat(), (y + h0 * 0.5).toFloat(),
            (w / PIXEL_STD).toFloat() * pad, (h / PIXEL_STD).toFloat() * pad)
    }

    /**
     * The RGB crop for one box, inputW x inputH, as bytes in NHWC order (index (v * inputW + u) * 3 + c),
     * horizontally mirrored when [mirror] (the flip-test pass): the whole model input of a uint8-input
     * artifact ([PoseModel.uint8Input]); [crop] normalises it for the others.
     * [rgb] holds the image row-major, 3 bytes per pixel (R, G, B), as unsigned values.
     * Sampling is OpenCV's warpAffine: output pixel (u, v) reads the image at
     * ((u - W/2) / f + cx, (v - H/2) / f + cy) with f = W / (sw * 200), bilinear, black outside.
     */
    fun cropBytes(rgb: ByteArray, imgW: Int, imgH: Int, cs: CenterScale, model: PoseModel, mirror: Boolean = false): ByteArray {
        val w = model.inputW
        val h = model.inputH
        val f = w / (cs.sw * PIXEL_STD)
        val out = ByteArray(w * h * 3)
        fun px(x: Int, y: Int, c: Int): Double =
            if (x < 0 || y < 0 || x >= imgW || y >= imgH) 0.0 else (rgb[(y * imgW + x) * 3 + c].toInt() and 0xFF).toDouble()
        for (v in 0 until h) {
            // OpenCV snaps sampling positions to 1/32 pixel (INTER_BITS = 5); doing the same keeps crops within
            // a grey level or two of cv2.warpAffine
            val sy = Math.round(((v - h / 2.0) / f + cs.cy) * 32)
            val y0 = Math.floorDiv(sy, 32L).toInt()
            val fy = Math.floorMod(sy, 32L) / 32.0
            for (u in 0 until w) {
                val sx = Math.round(((u - w / 2.0) / f + cs.cx) * 32)
                val x0 = Math.floorDiv(sx, 32L).toInt()
                val fx = Math.floorMod(sx, 32L) / 32.0
                val du = if (mirror) w - 1 - u else u
                for (c in 0 until 3) {
                    val top = px(x0, y0, c) * (1 - fx) + px(x0 + 1, y0, c) * fx
                    val bottom = px(x0, y0 + 1, c) * (1 - fx) + px(x0 + 1, y0 + 1, c) * fx
                    out[(v * w + du) * 3 + c] = Math.round(top * (1 - fy) + bottom * fy).coerceIn(0, 255).toByte()
                }
            }
        }
        return out
    }

    /** [cropBytes] normalised for a float-input model: (pixel / 255 - mean / 255) / (std / 255), NHWC floats. */
    fun crop(rgb: ByteArray, imgW: Int, imgH: Int, cs: CenterScale, model: PoseModel, mirror: Boolean = false): FloatArray =
        normalize(cropBytes(rgb, imgW, imgH, cs, model, mirror), model)

    /** ToTensor then NormalizeTensor, as edgepose.processing.normalize, on NHWC RGB bytes. */
    fun normalize(bytes: ByteArray, model: PoseModel): FloatArray {
        val m = FloatArray(3) { (model.mean[it] / 255.0).toFloat() }
        val s = FloatArray(3) { (model.std[it] / 255.0).toFloat() }
        return FloatArray(bytes.size) { i -> ((bytes[i].toInt() and 0xFF).toFloat() / 255f - m[i % 3]) / s[i % 3] }
    }

    /** Flip test: average [hm] with the flipped pass [flipped] (both NHWC, heatmapH x heatmapW x K). */
    fun mergeFlip(hm: FloatArray, flipped: FloatArray, model: PoseModel): FloatArray {
        val w = model.heatmapW
        val h = model.heatmapH
        val k = model.numKeypoints
        val swap = IntArray(k) { it }
        for (p in model.flipPairs) { swap[p[0]] = p[1]; swap[p[1]] = p[0] }
        val out = FloatArray(hm.size)
        for (y in 0 until h) for (x in 0 until w) for (j in 0 until k) {
            // back[x] = flipped[W-1-x] with channels swapped; shift_heatmap: shifted[x] = back[x-1], column 0 kept
            val xs = if (model.shiftHeatmap && x > 0) x - 1 else x
            val back = flipped[(y * w + (w - 1 - xs)) * k + swap[j]]
            out[(y * w + x) * k + j] = (hm[(y * w + x) * k + j] + back) * 0.5f
        }
        return out
    }

    /** 'default' decoding: keypoints (x, y, score) in image pixels, [numKeypoints][3]. */
    fun decode(hm: FloatArray, cs: CenterScale, model: PoseModel): Array<FloatArray> {
        val w = model.heatmapW
        val h = model.heatmapH
        val k = model.numKeypoints
        fun at(x: Int, y: Int, j: Int) = hm[(y * w + x) * k + j]
        return Array(k) { j ->
            var best = 0
            for (i in 1 until w * h) if (at(i % w, i / w, j) > at(best % w, best / w, j)) best = i  // first max
            val px = best % w
            val py = best / w
            val score = at(px, py, j)
            var x = px.toFloat()
            var y = py.toFloat()
            if (score <= 0f) { x = -1f; y = -1f }
            else if (px > 1 && px < w - 1 && py > 1 && py < h - 1) {
                x += 0.25f * Math.signum(at(px + 1, py, j) - at(px - 1, py, j))
                y += 0.25f * Math.signum(at(px, py + 1, j) - at(px, py - 1, j))
            }
            val sw = cs.sw * PIXEL_STD
            val sh = cs.sh * PIXEL_STD
            floatArrayOf((x * (sw / w) + cs.cx - sw * 0.5).toFloat(), (y * (sh / h) + cs.cy - sh * 0.5).toFloat(), score)
        }
    }
}
