// Person detection on the device in plain Kotlin (no Android classes): the letterbox that fits a frame into
// the detector's input, and the decoding of its outputs to person boxes in frame pixels, the same rules as
// edgepose.detection (checked against it on the JVM by tests/test_arm.py when kotlinc is installed):
//
// * edgepose's demo_person_detector: ONE output [1, 5, H/4, W/4] (TFLite: [1, H/4, W/4, 5]): channel 0 the
//   person-centre heatmap (sigmoid applied), 1-2 box width and height as fractions of the input width and
//   height, 3-4 the centre's offset inside its stride-4 cell. Peaks are cells equal to their 3x3 neighbourhood's
//   maximum (a 3x3 max-pool; outside the map counts as -inf) with score >= threshold, the best topK of them;
//   box = centre (x + dx, y + dy) * 4, size (w * inputW, h * inputH); the letterbox undone (clipped to the
//   frame); boxes of zero size dropped; greedy class-agnostic NMS (IoU > iouThreshold suppressed).
// * mmdeploy's end-to-end export (RTMDet, YOLOX): dets [1, N, 5] (x1, y1, x2, y2, score, input pixels) +
//   labels [1, N]; the model did the NMS: rows of the person label with score >= threshold, best first.
// * the raw YOLO layout [1, 4 + C, N]: cx, cy, w, h (input pixels) and C class scores per candidate; a row is a
//   person when its best class is the person class and that score >= threshold; top 300 by score, then NMS.
//
// Boxes are FloatArray(5): x1, y1, x2, y2, score, in pixel edges (a box over columns 0..9 has x1 = 0, x2 = 10).
package org.edgepose.example

/** A detector's input facts (the demo detector: 320 x 256, RGB, ImageNet mean/std, padded with the mean). */
class DetectorModel(
    val inputW: Int = 320, val inputH: Int = 256,
    val mean: FloatArray = floatArrayOf(123.675f, 116.28f, 103.53f),  // in the model's channel order
    val std: FloatArray = floatArrayOf(58.395f, 57.12f, 57.375f),
    val pad: IntArray = intArrayOf(124, 116, 104),  // letterbox border (edgepose: the mean; YOLO, RTMDet: 114)
    val bgr: Boolean = false,                        // feed B, G, R (mmdeploy RTMDet) instead of R, G, B
    val centered: Boolean = true,                    // false: image at the top-left corner (mmdet's Pad)
    val scoreThreshold: Float = 0.05f,
    val iouThreshold: Float = 0.6f,
    val topK: Int = 100
)

/** How a frame was fitted into the input: input = frame * (sx, sy) + (dx, dy), in pixel edges. */
class Letterbox(val sx: Double, val sy: Double, val dx: Int, val dy: Int, val imageW: Int, val imageH: Int, val nw: Int, val nh: Int) {
    /** A box in input pixels -> frame pixels (float32 arithmetic, as numpy does), clipped to the frame. */
    fun toImage(b: FloatArray): FloatArray {
        val fx = sx.toFloat()
        val fy = sy.toFloat()
        fun cx(v: Float) = ((v - dx) / fx).coerceIn(0f, imageW.toFloat())
        fun cy(v: Float) = ((v - dy) / fy).coerceIn(0f, imageH.toFloat())
        return floatArrayOf(cx(b[0]), cy(b[1]), cx(b[2]), cy(b[3]), b[4])
    }
}

object DetectionDecoder {
    const val STRIDE = 4

    /** The letterbox geometry of a imgW x imgH frame in the model's input (edgepose.detection.letterbox). */
    fun fit(imgW: Int, imgH: Int, model: DetectorModel): Letterbox {
        val s = minOf(model.inputW.toDouble() / imgW, model.inputH.toDouble() / imgH)
        val nw = maxOf(1, minOf(model.inputW, Math.rint(imgW * s).toInt()))  // Python's round: half to even
        val nh = maxOf(1, minOf(model.inputH, Math.rint(imgH * s).toInt()))
        val dx = if (model.centered) (model.inputW - nw) / 2 else 0
        val dy = if (model.centered) (model.inputH - nh) / 2 else 0
        return Letterbox(nw.toDouble() / imgW, nh.toDouble() / imgH, dx, dy, imgW, imgH, nw, nh)
    }

    /**
     * The detector's input, NHWC floats ((pixel - mean) / std, channels in the model's order), for an RGB frame
     * ([rgb]: row-major, 3 bytes per pixel): bilinear resize with OpenCV's INTER_LINEAR sampling (source =
     * (dst + 0.5) / scale - 0.5, clamped to the edge), the border filled with [DetectorModel.pad].
     */
    fun input(rgb: ByteArray, imgW: Int, imgH: Int, lb: Letterbox, model: DetectorModel): FloatArray {
        val w = model.inputW
        val h = model.inputH
        val out = FloatArray(w * h * 3)
        fun px(x: Int, y: Int, c: Int): Double = (rgb[(y * imgW + x) * 3 + c].toInt() and 0xFF).toDouble()
        for (v in 0 until h) for (u in 0 until w) {
            val inside = u >= lb.dx && u < lb.dx + lb.nw && v >= lb.dy && v < lb.dy + lb.nh
            for (k in 0 until 3) {
                val c = if (model.bgr) 2 - k else k  // model channel k reads frame channel c
                var value: Double
                if (!inside) {
                    value = model.pad[c].toDouble()
                } else {
                    val sxp = ((u - lb.dx + 0.5) * imgW / lb.nw - 0.5).coerceIn(0.0, (imgW - 1).toDouble())
                    val syp = ((v - lb.dy + 0.5) * imgH / lb.nh - 0.5).coerceIn(0.0, (imgH - 1).toDouble())
                    val x0 = sxp.toInt()
                    val y0 = syp.toInt()
                    val x1 = minOf(x0 + 1, imgW - 1)
                    val y1 = minOf(y0 + 1, imgH - 1)
                    val fx = sxp - x0
                    val fy = syp - y0
                    val top = px(x0, y0, c) * (1 - fx) + px(x1, y0, c) * fx
                    val bottom = px(x0, y1, c) * (1 - fx) + px(x1, y1, c) * fx
                    value = Math.rint(top * (1 - fy) + bottom * fy).coerceIn(0.0, 255.0)
                }
                out[(v * w + u) * 3 + k] = ((value.toFloat() - model.mean[k]) / model.std[k])
            }
        }
        return out
    }

    /**
     * edgepose's detector output -> boxes in frame pixels, best first. [out] holds [1, 5, H/4, W/4] when [nchw],
     * else [1, H/4, W/4, 5] (a TFLite artifact's NHWC layout).
     */
    fun decodeCenterNet(out: FloatArray, lb: Letterbox, model: DetectorModel, nchw: Boolean = false): List<FloatArray> {
        val gw = model.inputW / STRIDE
        val gh = model.inputH / STRIDE
        require(out.size == 5 * gw * gh) { "detector output: expected ${5 * gw * gh} values, got ${out.size}" }
        fun at(c: Int, y: Int, x: Int) = if (nchw) out[(c * gh + y) * gw + x] else out[(y * gw + x) * 5 + c]
        val peaks = ArrayList<Int>()
        for (y in 0 until gh) for (x in 0 until gw) {
            val s = at(0, y, x)
            if (s < model.scoreThreshold) continue
            var isMax = true
            for (yy in maxOf(0, y - 1)..minOf(gh - 1, y + 1)) for (xx in maxOf(0, x - 1)..minOf(gw - 1, x + 1))
                if (at(0, yy, xx) > s) isMax = false
            if (isMax) peaks.add(y * gw + x)
        }
        // best first; equal scores keep row-major order (numpy's stable argsort over np.nonzero's order)
        val best = peaks.sortedWith(compareByDescending<Int> { at(0, it / gw, it % gw) }).take(model.topK)
        val boxes = ArrayList<FloatArray>()
        for (i in best) {
            val y = i / gw
            val x = i % gw
            val w = at(1, y, x) * model.inputW
            val h = at(2, y, x) * model.inputH
            val cx = (x + at(3, y, x).toDouble()) * STRIDE
            val cy = (y + at(4, y, x).toDouble()) * STRIDE
            val inInput = floatArrayOf((cx - w / 2f).toFloat(), (cy - h / 2f).toFloat(), (cx + w / 2f).toFloat(),
                (cy + h / 2f).toFloat(), at(0, y, x))
            val b = lb.toImage(inInput)
            if (b[2] - b[0] > 0f && b[3] - b[1] > 0f) boxes.add(b)
        }
        return nms(boxes, model.iouThreshold)
    }

    /** mmdeploy's dets [1, N, 5] + labels [1, N] -> the person boxes in frame pixels, best first. */
    fun decodeMmdeploy(dets: FloatArray, labels: LongArray, lb: Letterbox, model: DetectorModel, personLabel: Long = 0): List<FloatArray> {
        val n = labels.size
        require(dets.size == n * 5) { "mmdeploy dets: expected [1, $n, 5], got ${dets.size} values" }
        val kept = ArrayList<FloatArray>()
        for (i in 0 until n) {
            val d = dets.copyOfRange(i * 5, i * 5 + 5)
            if (labels[i] != personLabel || d[4] < model.scoreThreshold || d.any { !it.isFinite() }) continue
            val b = lb.toImage(d)
            if (b[2] - b[0] > 0f && b[3] - b[1] > 0f) kept.add(b)
        }
        return kept.sortedWith(compareByDescending<FloatArray> { it[4] }).take(model.topK)
    }

    /** The raw YOLO output [1, 4 + C, N] -> person boxes in frame pixels after NMS, best first. */
    fun decodeYolo(out: FloatArray, numClasses: Int, lb: Letterbox, model: DetectorModel, personClass: Int = 0): List<FloatArray> {
        val rows = 4 + numClasses
        require(out.size % rows == 0) { "YOLO output: ${out.size} values is not [1, $rows, N]" }
        val n = out.size / rows
        fun at(r: Int, i: Int) = out[r * n + i]
        val cand = ArrayList<FloatArray>()
        for (i in 0 until n) {
            var arg = 0
            for (c in 1 until numClasses) if (at(4 + c, i) > at(4 + arg, i)) arg = c  // first max, as argmax
            val score = at(4 + personClass, i)
            if (arg != personClass || score < model.scoreThreshold) continue
            if (!(0 until 4).all { at(it, i).isFinite() }) continue
            val cx = at(0, i)
            val cy = at(1, i)
            val w = at(2, i)
            val h = at(3, i)
            cand.add(floatArrayOf(cx - w / 2, cy - h / 2, cx + w / 2, cy + h / 2, score))
        }
        val inInput = nms(cand.sortedWith(compareByDescending<FloatArray> { it[4] }).take(300), model.iouThreshold)
        return inInput.map { lb.toImage(it) }.filter { it[2] - it[0] > 0f && it[3] - it[1] > 0f }
    }

    fun iou(a: FloatArray, b: FloatArray): Double {
        val iw = maxOf(0.0, minOf(a[2], b[2]).toDouble() - maxOf(a[0], b[0]).toDouble())
        val ih = maxOf(0.0, minOf(a[3], b[3]).toDouble() - maxOf(a[1], b[1]).toDouble())
        val inter = iw * ih
        val union = (a[2].toDouble() - a[0]) * (a[3].toDouble() - a[1]) + (b[2].toDouble() - b[0]) * (b[3].toDouble() - b[1]) - inter
        return if (union > 0) inter / union else 0.0
    }

    /** Greedy class-agnostic NMS: best first (equal scores keep their order); IoU > [threshold] suppressed. */
    fun nms(boxes: List<FloatArray>, threshold: Float): List<FloatArray> {
        val sorted = boxes.sortedWith(compareByDescending<FloatArray> { it[4] })
        val keep = ArrayList<FloatArray>()
        val gone = BooleanArray(sorted.size)
        for (i in sorted.indices) {
            if (gone[i]) continue
            keep.add(sorted[i])
            for (j in i + 1 until sorted.size) if (!gone[j] && iou(sorted[i], sorted[j]) > threshold) gone[j] = true
        }
        return keep
    }
}
