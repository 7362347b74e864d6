use crate::common::{decode, fixture, image, mean_abs_diff};

#[test]
fn every_image_format_decodes_with_its_properties() {
    // (file, format, width, height, stored colour layout)
    let cases = [
        ("images/photo_02.jpg", "jpeg", 451, 300, "Rgb8"),
        ("images/derived_progressive.jpg", "jpeg", 451, 300, "Rgb8"),
        ("images/photo_15.jpg", "jpeg", 480, 360, "Rgb8"),
        ("images/photo_03.webp", "webp", 600, 400, "Rgb8"),
        ("images/photo_05.png", "png", 512, 512, "L8"),
        ("images/derived_rgb48.png", "png", 128, 128, "Rgb16"),
        ("images/derived_palette.png", "png", 128, 128, "Rgb8"),
        ("images/derived_alpha.png", "png", 128, 128, "Rgba8"),
        ("images/photo_08.tif", "tiff", 384, 303, "L8"),
        ("text/ocr_03.tif", "tiff", 3312, 2550, "L1"),
        ("images/derived_bmp24.bmp", "bmp", 128, 128, "Rgb8"),
        ("images/photo_09.gif", "gif", 200, 150, "Rgba8"),
    ];
    for (file, format, w, h, color) in cases {
        let intake = decode(file).unwrap_or_else(|e| panic!("{file}: {e}"));
        assert_eq!(intake.format.as_str(), format, "{file}");
        let img = image(file);
        assert_eq!((img.info.width, img.info.height), (w, h), "{file}");
        assert_eq!(img.rgb.dimensions(), (w, h), "{file}");
        assert_eq!(img.info.color, color, "{file}");
        assert!(intake.extension_mismatch.is_none(), "{file}");
    }
}

/// ffmpeg, an independent decoder, as the reference for pixel values.
fn ffmpeg_rgb(rel: &str) -> image::RgbImage {
    let out = std::process::Command::new("ffmpeg")
        .args(["-nostdin", "-loglevel", "error", "-i"])
        .arg(fixture(rel))
        .args([
            "-frames:v",
            "1",
            "-pix_fmt",
            "rgb24",
            "-c:v",
            "ppm",
            "-f",
            "image2pipe",
            "-",
        ])
        .output()
        .expect("ffmpeg runs");
    image::load_from_memory_with_format(&out.stdout, image::ImageFormat::Pnm)
        .expect("ppm")
        .into_rgb8()
}

#[test]
fn pixels_match_an_independent_decoder() {
    // Lossless formats decode to the same values (16-bit: rounding to 8 bits may differ by one).
    for file in [
        "images/derived_bmp24.bmp",
        "images/derived_rgb48.png",
        "images/derived_palette.png",
        "images/photo_05.png",
        "images/photo_08.tif",
        "images/photo_09.gif",
    ] {
        let d = mean_abs_diff(&image(file).rgb, &ffmpeg_rgb(file));
        assert!(d < 1.0, "{file} differs from ffmpeg's decode by {d}");
    }
    // Lossy formats: IDCT and chroma upsampling differ a little between decoders.
    for file in [
        "images/photo_02.jpg",
        "images/derived_progressive.jpg",
        "images/photo_03.webp",
    ] {
        let d = mean_abs_diff(&image(file).rgb, &ffmpeg_rgb(file));
        assert!(d < 3.0, "{file} differs from ffmpeg's decode by {d}");
    }
    // jpegtran -progressive keeps the DCT coefficients: same pixels as the baseline file.
    let d = mean_abs_diff(
        &image("images/photo_02.jpg").rgb,
        &image("images/derived_progressive.jpg").rgb,
    );
    assert!(
        d < 1.0,
        "progressive JPEG differs from its baseline source by {d}"
    );
}

#[test]
fn transparent_pixels_become_white() {
    let img = image("images/derived_alpha.png");
    assert!(img.info.has_alpha);
    assert!((0..128).all(|y| img.rgb.get_pixel(10, y).0 == [255, 255, 255]));
    let hopper = image("images/derived_bmp24.bmp").rgb;
    let right_same = (64..128).all(|x| {
        let (a, b) = (img.rgb.get_pixel(x, 60).0, hopper.get_pixel(x, 60).0);
        a.iter().zip(b).all(|(p, q)| p.abs_diff(q) <= 2)
    });
    assert!(right_same, "opaque half must keep its pixels");
}

#[test]
fn exif_orientation_is_applied() {
    // Same photo: stored 1200x1800 with Orientation=6, and 1800x1200 with Orientation=3.
    let rotated90 = image("images/photo_10.jpg");
    let rotated180 = image("images/photo_11.jpg");
    assert_eq!(rotated90.info.exif_orientation, Some(6));
    assert_eq!(rotated180.info.exif_orientation, Some(3));
    assert_eq!(rotated90.rgb.dimensions(), (1800, 1200));
    assert_eq!(rotated180.rgb.dimensions(), (1800, 1200));
    // Upright, both show the same scene (only the overlaid digit differs).
    let d = mean_abs_diff(&rotated90.rgb, &rotated180.rgb);
    assert!(d < 8.0, "upright versions differ by {d}");
}

#[test]
fn cmyk_jpeg_keeps_its_colours() {
    // A frangipani among green leaves: inverted or misread CMYK would not be mostly green.
    let img = image("images/photo_15.jpg");
    let (mut r, mut g, mut b) = (0u64, 0u64, 0u64);
    for p in img.rgb.pixels() {
        r += u64::from(p[0]);
        g += u64::from(p[1]);
        b += u64::from(p[2]);
    }
    assert!(g > r && g > b, "mean r={r} g={g} b={b}");
}

#[test]
fn animated_gif_gives_first_frame_and_frame_count() {
    let gif = image("images/photo_09.gif");
    assert_eq!(gif.info.frame_count, Some(36));
}

#[test]
fn exif_capture_time_and_camera_are_read() {
    let exif = image("images/photo_15.jpg")
        .info
        .exif
        .expect("photo_15 carries EXIF");
    assert_eq!(exif.camera_make.as_deref(), Some("Canon"));
    assert_eq!(exif.camera_model.as_deref(), Some("Canon PowerShot S40"));
    assert_eq!(exif.captured_at.as_deref(), Some("2003-12-14 12:01:44"));
    // A wrongly typed GPS tag must not cost the rest of the EXIF, nor the image.
    let exif = image("images/photo_13.jpg")
        .info
        .exif
        .expect("photo_13 carries EXIF");
    assert!(
        exif.captured_at
            .as_deref()
            .is_some_and(|t| t.starts_with("2010-")),
        "{exif:?}"
    );
}
