//! The song writer against real llama.cpp on the tiny GGUF (`tools/tinygguf/make_tiny_gguf.py`), and its
//! repair step on hand-made garbage. The tiny model's strings are gibberish, but its JSON is real: every
//! rule checked here holds for any model.

use std::cell::Cell;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use radio_shared::job::{
    GenerateTask, SongRequest, Station, TIME_SIGNATURES, Writer, normalize_keyscale,
};
use radio_worker::songwriter::{
    INSTRUMENTAL, LlamaSongWriter, LlmPlacement, LoadError, SongBrief, SongDescription, SongField,
    SongWriter, SongWriterConfig, SongWriters, StopReason, TemplateSongWriter, Unusable,
    WriterNote, repair_llm_output,
};

fn fixture() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/tiny-songwriter.gguf")
}

fn config() -> SongWriterConfig {
    SongWriterConfig {
        model_path: Some(fixture()),
        ..SongWriterConfig::default()
    }
}

fn writers_with(config: &SongWriterConfig, keep_resident: bool) -> SongWriters {
    let placement = LlmPlacement {
        gpu_layers: 0,
        keep_resident,
    };
    let llm = LlamaSongWriter::load(config, placement).expect("the tiny GGUF loads");
    SongWriters::with_llm(llm)
}

fn writers() -> SongWriters {
    writers_with(&config(), true)
}

fn station(genre: &str, theme: &str, language: &str, instrumental: bool) -> Station {
    Station {
        genre: genre.into(),
        theme: theme.into(),
        style: "warm tape, wide stereo".into(),
        language: language.into(),
        instrumental,
    }
}

fn brief(station: Station, duration_s: f32, seed: u64) -> SongBrief {
    SongBrief {
        station,
        request: SongRequest {
            duration_s,
            ..SongRequest::default()
        },
        recent_titles: vec!["Neon Rain".into(), "Midnight Static".into()],
        seed,
    }
}

fn never() -> bool {
    false
}

/// The rules a user would notice, checked directly (not only through `SongDescription::check`).
fn assert_valid(d: &SongDescription, b: &SongBrief) {
    assert_eq!(d.check(b), Ok(()), "{d:#?}");
    assert!(
        !d.title.trim().is_empty() && d.title.chars().count() <= 60,
        "{d:?}"
    );
    assert!(
        !b.recent_titles
            .iter()
            .any(|t| t.eq_ignore_ascii_case(d.title.trim())),
        "{d:?}"
    );
    assert!((30..=300).contains(&d.bpm), "{d:?}");
    assert_eq!(
        normalize_keyscale(&d.keyscale).as_deref(),
        Some(d.keyscale.as_str())
    );
    assert!(TIME_SIGNATURES.contains(&d.timesignature));
    assert_eq!(d.language, b.language());
    for text in [&d.title, &d.caption] {
        assert!(!text.chars().any(char::is_control), "{text:?}");
        assert!(!text.contains('\u{FFFD}'), "{text:?}");
    }
    if b.instrumental() {
        assert_eq!(d.lyrics, INSTRUMENTAL);
    } else {
        let first = d.lyrics.lines().next().unwrap_or_default();
        assert!(
            [
                "[verse]",
                "[chorus]",
                "[intro]",
                "[bridge]",
                "[outro]",
                "[pre-chorus]",
                "[hook]",
                "[interlude]"
            ]
            .contains(&first),
            "lyrics must open with a section tag: {:?}",
            d.lyrics
        );
        assert!(!d.lyrics.contains('\u{FFFD}'));
    }
}

#[test]
fn the_llm_writes_valid_songs_for_many_stations() {
    let mut w = writers();
    let cases = [
        (
            station("lofi hip hop", "rainy city nights", "en", false),
            30.0,
        ),
        (
            station("melodic death metal", "winter wolves", "de", false),
            240.0,
        ),
        (station("bossa nova", "a café by the sea", "pt", true), 60.0),
        (station("city pop", "summer drive", "ja", false), 8.0),
        (station("orchestral", "", "unknown", true), 600.0),
        (station("synthwave", "neon skylines", "fr", false), 120.0),
    ];
    let mut sections_by_duration = Vec::new();
    for (i, (station, duration)) in cases.into_iter().enumerate() {
        let b = brief(station, duration, 1000 + i as u64);
        let song = w.write(&b, &never).expect("not cancelled");
        assert_valid(&song.description, &b);
        assert_eq!(song.writer, Writer::Llm, "{:?}", song.note);
        assert!(song.stats.generated_tokens > 0 && song.stats.prompt_tokens > 0);
        if !b.instrumental() {
            let sections = song
                .description
                .lyrics
                .lines()
                .filter(|l| l.starts_with('['))
                .count();
            sections_by_duration.push((duration, sections));
        }
    }
    // Lyrics are sized to the duration: the 4-minute song has more sections than the 8-second clip.
    let short = sections_by_duration
        .iter()
        .find(|(d, _)| *d == 8.0)
        .map(|(_, s)| *s);
    let long = sections_by_duration
        .iter()
        .find(|(d, _)| *d == 240.0)
        .map(|(_, s)| *s);
    assert!(short < long, "{sections_by_duration:?}");
}

#[test]
fn a_seed_reproduces_its_song_and_another_seed_does_not() {
    let mut w = writers();
    let b = brief(station("indie rock", "old friends", "en", false), 60.0, 42);
    let first = w.write(&b, &never).expect("written");
    let again = w.write(&b, &never).expect("written");
    assert_eq!(first.description, again.description);
    assert_eq!(first.writer, Writer::Llm);

    let mut other = b.clone();
    other.seed = 43;
    let different = w.write(&other, &never).expect("written");
    assert_ne!(first.description, different.description);
}

#[test]
fn fixed_fields_always_win() {
    let mut w = writers();
    let mut b = brief(station("jazz", "late trains", "en", false), 45.0, 7);
    b.request.bpm = Some(97);
    b.request.keyscale = Some("f# MINOR".into());
    b.request.timesignature = Some(3);
    b.request.language = Some("it".into());
    let song = w.write(&b, &never).expect("written");
    assert_eq!(song.writer, Writer::Llm);
    let d = &song.description;
    assert_eq!(
        (d.bpm, d.keyscale.as_str(), d.timesignature),
        (97, "F# minor", 3)
    );
    assert_eq!(d.language, "it");
    assert_valid(d, &b);

    // A fixed caption alone: the LLM writes the rest, the caption stays.
    let mut b = brief(station("jazz", "late trains", "en", false), 45.0, 8);
    b.request.caption = Some("smoky jazz trio, brushed drums".into());
    let song = w.write(&b, &never).expect("written");
    assert_eq!(song.writer, Writer::Llm);
    assert_eq!(song.description.caption, "smoky jazz trio, brushed drums");
    assert_valid(&song.description, &b);
}

#[test]
fn caption_and_lyrics_from_the_requester_skip_the_llm() {
    let mut w = writers();
    let mut b = brief(station("pop", "anything", "en", true), 60.0, 5);
    b.request.caption = Some("bright pop, claps".into());
    b.request.lyrics = Some("[verse]\nneon rain on my window\n[chorus]\nla la la".into());
    b.request.bpm = Some(120);
    let song = w.write(&b, &never).expect("written");
    assert_eq!(song.writer, Writer::User);
    assert_eq!(song.stats.generated_tokens, 0);
    let d = &song.description;
    assert_eq!(d.caption, "bright pop, claps");
    assert_eq!(
        d.lyrics,
        "[verse]\nneon rain on my window\n[chorus]\nla la la"
    );
    assert_eq!(d.bpm, 120);
    // The title comes from the first line, but "Neon rain …" is not "Neon Rain": only equal titles clash.
    assert_eq!(d.title, "Neon rain on my window");
    assert_valid(d, &b);

    // Requester-written instrumentals are spelled the way ACE-Step expects.
    b.request.lyrics = Some("[instrumental]".into());
    let song = w.write(&b, &never).expect("written");
    assert_eq!(song.writer, Writer::User);
    assert_eq!(song.description.lyrics, INSTRUMENTAL);
    assert!(!b.is_recent_title(&song.description.title));
}

#[test]
fn a_recent_title_is_never_reused() {
    let mut w = writers();
    let b = brief(station("house", "sunrise", "en", false), 30.0, 11);
    let first = w.write(&b, &never).expect("written").description.title;
    let mut again = b.clone();
    again.recent_titles.push(first.to_uppercase());
    let second = w.write(&again, &never).expect("written").description.title;
    assert!(!second.eq_ignore_ascii_case(&first), "{first:?} {second:?}");

    // The template writer too, even when its first choices are all taken.
    let mut t = TemplateSongWriter;
    let mut b = brief(station("house", "sunrise", "en", false), 30.0, 11);
    for _ in 0..8 {
        let title = t.write(&b, &never).expect("written").description.title;
        assert!(!b.is_recent_title(&title));
        b.recent_titles.push(title);
    }
}

#[test]
fn a_one_token_limit_falls_back_to_the_template_writer() {
    let mut w = writers_with(
        &SongWriterConfig {
            max_tokens: 1,
            ..config()
        },
        true,
    );
    let b = brief(station("reggae", "island time", "es", false), 60.0, 3);
    let song = w.write(&b, &never).expect("written");
    assert_eq!(song.writer, Writer::Template);
    assert_eq!(song.stats.generated_tokens, 1);
    let Some(WriterNote::LlmFailed { reason }) = &song.note else {
        panic!("expected a fallback note, got {:?}", song.note);
    };
    assert!(reason.contains("token limit"), "{reason}");
    let shown = song
        .note
        .as_ref()
        .map(ToString::to_string)
        .unwrap_or_default();
    assert!(shown.starts_with("template writer used because"), "{shown}");
    let template = TemplateSongWriter.write(&b, &never).expect("written");
    assert_eq!(song.description, template.description);
    assert_valid(&song.description, &b);
}

#[test]
fn a_small_token_limit_keeps_the_complete_fields_and_repairs_the_rest() {
    let mut w = writers_with(
        &SongWriterConfig {
            max_tokens: 160,
            ..config()
        },
        true,
    );
    let b = brief(station("folk", "the river", "en", false), 120.0, 21);
    let song = w.write(&b, &never).expect("written");
    assert_valid(&song.description, &b);
    assert_eq!(song.writer, Writer::Llm, "{:?}", song.note);
    assert_eq!(song.stats.generated_tokens, 160);
    let Some(WriterNote::Repaired { fields, stop, .. }) = &song.note else {
        panic!("expected a repair note, got {:?}", song.note);
    };
    assert_eq!(*stop, StopReason::TokenLimit);
    assert!(fields.contains(&SongField::Lyrics), "{fields:?}");
    let shown = song
        .note
        .as_ref()
        .map(ToString::to_string)
        .unwrap_or_default();
    assert!(
        shown.contains("lyrics") && shown.contains("token limit"),
        "{shown}"
    );
}

#[test]
fn a_zero_timeout_falls_back_to_the_template_writer() {
    let mut w = writers_with(
        &SongWriterConfig {
            timeout: Duration::ZERO,
            ..config()
        },
        true,
    );
    let b = brief(station("techno", "warehouse", "nl", false), 90.0, 4);
    let started = Instant::now();
    let song = w.write(&b, &never).expect("written");
    assert!(started.elapsed() < Duration::from_secs(5));
    assert_eq!(song.writer, Writer::Template);
    assert_eq!(song.stats.generated_tokens, 0);
    let Some(WriterNote::LlmFailed { reason }) = &song.note else {
        panic!("expected a fallback note, got {:?}", song.note);
    };
    assert!(reason.contains("timed out"), "{reason}");
    assert_valid(&song.description, &b);
}

#[test]
fn cancellation_stops_between_tokens_and_the_writer_stays_usable() {
    let mut w = writers();
    let b = brief(station("ambient", "deep space", "en", false), 120.0, 9);
    let polls = Cell::new(0u32);
    let stop_after_ten = || {
        polls.set(polls.get() + 1);
        polls.get() > 10
    };
    let result = w.write(&b, &stop_after_ten);
    assert!(result.is_err(), "cancelled");
    assert_eq!(polls.get(), 11, "stopped at the first poll that said so");
    let song = w.write(&b, &never).expect("the next song works");
    assert_eq!(song.writer, Writer::Llm);

    let mut template_only = SongWriters::template_only(None);
    assert!(template_only.write(&b, &|| true).is_err());
}

#[test]
fn a_model_not_kept_resident_is_loaded_per_song_and_released() {
    let mut w = writers_with(&config(), false);
    assert!(
        !w.llm().expect("llm").is_loaded(),
        "checked at start, then released"
    );
    let b = brief(station("trip hop", "fog", "en", false), 30.0, 12);
    let song = w.write(&b, &never).expect("written");
    assert_eq!(song.writer, Writer::Llm);
    assert!(song.stats.load_time > Duration::ZERO);
    assert!(
        !w.llm().expect("llm").is_loaded(),
        "released after the song"
    );

    // A resident model can be released on demand and comes back for the next song.
    let mut w = writers();
    let before = w.write(&b, &never).expect("written");
    assert_eq!(before.stats.load_time, Duration::ZERO);
    w.unload();
    assert!(!w.llm().expect("llm").is_loaded());
    let after = w.write(&b, &never).expect("written");
    assert_eq!(
        before.description, after.description,
        "reloading does not change the song"
    );
    assert!(after.stats.load_time > Duration::ZERO);
}

fn scratch_dir(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("songwriter-{name}-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("temp dir");
    dir
}

#[test]
fn a_missing_model_is_a_clear_error_or_a_logged_fallback() {
    let dir = scratch_dir("missing");
    let missing = dir.join("nope.gguf");
    let cfg = SongWriterConfig {
        model_path: Some(missing.clone()),
        ..SongWriterConfig::default()
    };
    let err = LlamaSongWriter::load(&cfg, LlmPlacement::default()).expect_err("missing");
    assert!(matches!(err, LoadError::Missing { .. }), "{err:?}");
    let text = err.to_string();
    assert!(
        text.contains(&missing.display().to_string()) && text.contains("LLM_MODEL_PATH"),
        "{text}"
    );

    let required = SongWriterConfig {
        required: true,
        ..cfg.clone()
    };
    assert!(SongWriters::from_config(&required, LlmPlacement::default()).is_err());

    let mut w = SongWriters::from_config(&cfg, LlmPlacement::default()).expect("falls back");
    assert!(w.llm().is_none());
    assert!(
        w.llm_unavailable()
            .is_some_and(|why| why.contains("nope.gguf"))
    );
    let b = brief(station("blues", "trains", "en", false), 60.0, 1);
    let song = w.write(&b, &never).expect("written");
    assert_eq!(song.writer, Writer::Template);
    assert_valid(&song.description, &b);

    // No model configured at all: template writer; required: an error naming the setting.
    let none = SongWriterConfig::default();
    assert!(
        SongWriters::from_config(&none, LlmPlacement::default()).is_ok_and(|w| w.llm().is_none())
    );
    let err = SongWriters::from_config(
        &SongWriterConfig {
            required: true,
            ..none
        },
        LlmPlacement::default(),
    )
    .expect_err("required");
    assert!(err.to_string().contains("LLM_MODEL_PATH"), "{err}");
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn corrupt_models_are_refused_at_start_without_panicking() {
    let dir = scratch_dir("corrupt");
    let good = std::fs::read(fixture()).expect("fixture");
    let mut noise = Vec::with_capacity(300_000);
    let mut x = 0x2545_F491_4F6C_DD1Du64;
    for _ in 0..300_000 {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        noise.push((x >> 24) as u8);
    }
    let mut magic_then_noise = b"GGUF".to_vec();
    magic_then_noise.extend_from_slice(&noise);
    let cases: [(&str, Vec<u8>); 5] = [
        ("truncated.gguf", good[..good.len() / 3].to_vec()),
        ("header-only.gguf", good[..2_000].to_vec()),
        ("random.gguf", noise),
        ("magic-then-random.gguf", magic_then_noise),
        ("empty.gguf", Vec::new()),
    ];
    for (name, bytes) in cases {
        let path = dir.join(name);
        std::fs::write(&path, bytes).expect("write");
        let cfg = SongWriterConfig {
            model_path: Some(path.clone()),
            ..SongWriterConfig::default()
        };
        let err = LlamaSongWriter::load(&cfg, LlmPlacement::default()).expect_err(name);
        let text = err.to_string();
        assert!(text.contains(&path.display().to_string()), "{name}: {text}");
        assert!(
            matches!(err, LoadError::Corrupt { .. } | LoadError::NotGguf { .. }),
            "{name}: {err:?}"
        );
        let required = SongWriterConfig {
            required: true,
            ..cfg.clone()
        };
        assert!(SongWriters::from_config(&required, LlmPlacement::default()).is_err());
        let w = SongWriters::from_config(&cfg, LlmPlacement::default()).expect(name);
        assert!(w.llm().is_none());
    }
    let err = LlamaSongWriter::load(
        &SongWriterConfig {
            model_path: Some(dir.clone()),
            ..SongWriterConfig::default()
        },
        LlmPlacement::default(),
    )
    .expect_err("a directory");
    assert!(matches!(err, LoadError::NotAFile { .. }), "{err:?}");
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn a_loaded_model_reports_its_shape() {
    let config = SongWriterConfig {
        model_path: Some(fixture()),
        ..SongWriterConfig::default()
    };
    let llm = LlamaSongWriter::load(&config, LlmPlacement::default()).expect("tiny model");
    let info = llm.info();
    assert_eq!(info.architecture, "llama");
    assert_eq!(info.n_layers, 2);
    assert_eq!(info.n_ctx_train, 4096);
    assert!(info.has_chat_template);
    assert_eq!(
        info.file_size,
        std::fs::metadata(fixture()).expect("fixture").len()
    );
}

#[test]
fn song_writers_can_move_to_a_blocking_thread() {
    fn is_send<T: Send>(_: &T) {}
    let w = writers();
    is_send(&w);
    let b = brief(station("funk", "roller disco", "en", false), 30.0, 77);
    let song = std::thread::spawn(move || {
        let mut w = w;
        w.write(&b, &never)
    })
    .join()
    .expect("thread")
    .expect("written");
    assert_eq!(song.writer, Writer::Llm);
}

#[test]
fn a_brief_comes_from_a_generation_job() {
    let task = GenerateTask {
        station: station("lofi", "rain", "en", false),
        song: SongRequest {
            duration_s: 33.0,
            language: Some("ko".into()),
            ..SongRequest::default()
        },
        recent_titles: vec!["A".into()],
        ..GenerateTask::default()
    };
    let b = SongBrief::from_task(&task, 99);
    assert_eq!(
        (b.seed, b.duration_s(), b.language()),
        (99, 33.0, "ko".to_string())
    );
    assert!(b.is_recent_title(" a "));
}

// ---- The repair step on garbage the model could write ----------------------------------------------

fn garbage_brief() -> SongBrief {
    brief(station("lofi hip hop", "rain", "en", false), 60.0, 5)
}

fn repair(raw: &[u8]) -> Result<radio_worker::songwriter::Repaired, Unusable> {
    let b = garbage_brief();
    let template = TemplateSongWriter.describe(&b);
    repair_llm_output(raw, &b, &template)
}

const GOOD: &str = r#"{"title": "Paper Moon", "caption": "lofi hip hop, dusty drums, warm keys", "bpm": 84,
 "keyscale": "A minor", "timesignature": 4, "lyrics": [
  {"section": "verse", "lines": ["rain on the window", "coffee gone cold"]},
  {"section": "chorus", "lines": ["paper moon", "hold me soon"]},
  {"section": "outro", "lines": ["paper moon"]}]}"#;

#[test]
fn a_good_answer_passes_unchanged() {
    let r = repair(GOOD.as_bytes()).expect("usable");
    assert!(r.repaired.is_empty(), "{:?}", r.repaired);
    assert_eq!(r.description.title, "Paper Moon");
    assert_eq!(r.description.bpm, 84);
    assert_eq!(
        r.description.lyrics,
        "[verse]\nrain on the window\ncoffee gone cold\n\n[chorus]\npaper moon\nhold me soon\n\n[outro]\npaper moon"
    );
    assert_valid(&r.description, &garbage_brief());
}

#[test]
fn invalid_utf8_and_control_characters_are_removed() {
    let mut raw = br#"{"title": "Pa"#.to_vec();
    raw.extend_from_slice(&[0xE2, 0x82]); // half a euro sign
    raw.extend_from_slice(br#"per\u0007 Moon", "caption": "lofi \u0000 beats, "#);
    raw.extend_from_slice(&[0xFF, 0xFE]);
    raw.extend_from_slice(br#" tape hiss", "bpm": 84, "keyscale": "Am", "timesignature": "4/4", "lyrics": "[Verse 1]\nrain\u0001 falls\n[Chorus]\nla la\n[Outro]\nbye"}"#);
    let r = repair(&raw).expect("usable");
    let d = &r.description;
    assert_eq!(d.title, "Paper Moon");
    assert_eq!(d.caption, "lofi beats, tape hiss");
    assert_eq!(d.keyscale, "A minor");
    assert_eq!(d.timesignature, 4);
    assert_eq!(
        d.lyrics,
        "[verse]\nrain falls\n\n[chorus]\nla la\n\n[outro]\nbye"
    );
    assert!(r.repaired.contains(&SongField::Title) && r.repaired.contains(&SongField::Lyrics));
    assert_valid(d, &garbage_brief());
}

#[test]
fn out_of_range_and_missing_fields_are_clamped_or_filled_from_the_template() {
    let b = garbage_brief();
    let template = TemplateSongWriter.describe(&b);
    let raw = br#"{"caption": "lofi, rhodes, vinyl crackle", "bpm": 999, "keyscale": "H dorian", "timesignature": 7}"#;
    let r = repair_llm_output(raw, &b, &template).expect("usable");
    let d = &r.description;
    assert_eq!(d.bpm, 300);
    assert_eq!(d.title, template.title);
    assert_eq!(d.keyscale, template.keyscale);
    assert_eq!(d.timesignature, template.timesignature);
    assert_eq!(d.lyrics, template.lyrics);
    for field in [
        SongField::Bpm,
        SongField::Title,
        SongField::Keyscale,
        SongField::Timesignature,
        SongField::Lyrics,
    ] {
        assert!(r.repaired.contains(&field), "{field}: {:?}", r.repaired);
    }
    assert_valid(d, &b);
}

#[test]
fn unusable_answers_are_refused() {
    assert_eq!(repair(b"").unwrap_err_or_none(), Some(Unusable::Empty));
    assert_eq!(
        repair(b" \n\t ").unwrap_err_or_none(),
        Some(Unusable::Empty)
    );
    assert_eq!(
        repair(b"Sure! Here is your song.").unwrap_err_or_none(),
        Some(Unusable::NoObject)
    );
    assert_eq!(repair(b"{").unwrap_err_or_none(), Some(Unusable::NoCaption));
    assert_eq!(
        repair(br#"{"title": "x", "caption": "!!"}"#).unwrap_err_or_none(),
        Some(Unusable::NoCaption)
    );
    assert_eq!(
        repair(&[0xFF; 64]).unwrap_err_or_none(),
        Some(Unusable::NoObject)
    );
}

/// `Result::err` under a name that reads well in the assertions above.
trait ErrOrNone<E> {
    fn unwrap_err_or_none(self) -> Option<E>;
}

impl<T, E> ErrOrNone<E> for Result<T, E> {
    fn unwrap_err_or_none(self) -> Option<E> {
        self.err()
    }
}

#[test]
fn a_cut_off_answer_keeps_its_complete_fields() {
    let cut = &GOOD[..GOOD.find("hold me").expect("in GOOD") + 4];
    let r = repair(cut.as_bytes()).expect("usable");
    let d = &r.description;
    assert_eq!(d.title, "Paper Moon");
    assert_eq!(d.caption, "lofi hip hop, dusty drums, warm keys");
    assert_eq!(d.bpm, 84);
    // The cut line ("hold") is dropped; two sections are enough for a minute.
    assert_eq!(
        d.lyrics,
        "[verse]\nrain on the window\ncoffee gone cold\n\n[chorus]\npaper moon"
    );
    assert!(r.repaired.contains(&SongField::Lyrics));
    assert_valid(d, &garbage_brief());

    // Cut inside the caption: the partial last word goes, the rest comes from the template; what is
    // left names no sound, so the template's description of the sound is added.
    let r =
        repair(br#"{"title": "Paper Moon", "caption": "lofi hip hop, dusty dr"#).expect("usable");
    let caption = &r.description.caption;
    assert!(
        caption.starts_with("lofi hip hop, dusty, ") && caption.len() > 30,
        "{caption}"
    );
    assert_valid(&r.description, &garbage_brief());
}

#[test]
fn lyrics_are_fitted_to_the_duration() {
    let b = brief(station("pop", "x", "en", false), 30.0, 1);
    let template = TemplateSongWriter.describe(&b);
    let sections: Vec<String> = (0..12)
        .map(|i| {
            format!(r#"{{"section": "verse", "lines": ["a{i}", "b", "c", "d", "e", "f", "g"]}}"#)
        })
        .collect();
    let raw = format!(
        r#"{{"title": "T", "caption": "pop song, synths", "lyrics": [{}]}}"#,
        sections.join(",")
    );
    let r = repair_llm_output(raw.as_bytes(), &b, &template).expect("usable");
    let plan = b.lyrics_plan();
    let tags = r
        .description
        .lyrics
        .lines()
        .filter(|l| l.starts_with('['))
        .count();
    assert_eq!(tags, plan.max_sections);
    assert!(r.repaired.contains(&SongField::Lyrics));
    assert_valid(&r.description, &b);

    // Untagged lines get tags; nothing sung at all means template lyrics.
    let raw = br#"{"title": "T", "caption": "pop song, synths", "lyrics": "one\ntwo\nthree\nfour\nfive\nsix"}"#;
    let r = repair_llm_output(raw, &b, &template).expect("usable");
    assert!(
        r.description.lyrics.starts_with("[verse]\none"),
        "{}",
        r.description.lyrics
    );
    let raw = br#"{"title": "T", "caption": "pop song, synths", "lyrics": [{"section": "verse", "lines": ["", "!!"]}]}"#;
    let r = repair_llm_output(raw, &b, &template).expect("usable");
    assert_eq!(r.description.lyrics, template.lyrics);
}

/// A small xorshift generator, so the noise below is the same on every run.
struct Noise(u64);

impl Noise {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }

    fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }
}

#[test]
fn every_cut_and_any_noise_gives_a_valid_description_or_a_refusal() {
    let mut b = garbage_brief();
    b.recent_titles.clear();
    let template = TemplateSongWriter.describe(&b);
    let mut usable = 0;
    for end in 0..=GOOD.len() {
        if let Ok(r) = repair_llm_output(&GOOD.as_bytes()[..end], &b, &template) {
            assert_eq!(r.description.check(&b), Ok(()), "cut at {end}: {r:#?}");
            usable += 1;
        }
    }
    assert!(
        usable > GOOD.len() / 2,
        "most cuts keep a usable caption: {usable}"
    );

    let pieces: [&[u8]; 24] = [
        b"{",
        b"}",
        b"[",
        b"]",
        b"\"",
        b":",
        b",",
        b"\\",
        b"\\u",
        b"d800",
        b"00e9",
        b"\\n",
        b" ",
        b"\"title\"",
        b"\"caption\"",
        b"\"lyrics\"",
        b"\"bpm\"",
        b"\"section\"",
        b"\"lines\"",
        b"verse",
        b"la la",
        b"-1e999",
        b"\xF0\x9F",
        b"\xFF",
    ];
    let mut noise = Noise(0x9E37_79B9_7F4A_7C15);
    let mut usable = 0;
    for case in 0..3000 {
        let mut raw = GOOD.as_bytes()[..noise.below(GOOD.len())].to_vec();
        if case % 2 == 0 {
            raw.clear();
        }
        for _ in 0..noise.below(60) {
            raw.extend_from_slice(pieces[noise.below(pieces.len())]);
        }
        if let Ok(r) = repair_llm_output(&raw, &b, &template) {
            assert_eq!(
                r.description.check(&b),
                Ok(()),
                "{:?}: {r:#?}",
                String::from_utf8_lossy(&raw)
            );
            usable += 1;
        }
    }
    assert!(usable > 0);
}

#[test]
fn instrumental_stations_get_exactly_instrumental() {
    let b = brief(station("ambient", "x", "en", true), 60.0, 1);
    let template = TemplateSongWriter.describe(&b);
    let r = repair_llm_output(GOOD.as_bytes(), &b, &template).expect("usable");
    assert_eq!(r.description.lyrics, INSTRUMENTAL);
}

// ---- Speed -------------------------------------------------------------------------------------------

/// Prints tokens per second and time per song on the tiny model (median of `SONGWRITER_BENCH_RUNS`
/// songs, default 5). Run with `--nocapture` to see the figures. Dev profile: dependencies, llama.cpp
/// included, are built at opt-level 2.
#[test]
fn tokens_per_second_on_the_tiny_model() {
    let runs: usize = std::env::var("SONGWRITER_BENCH_RUNS")
        .ok()
        .and_then(|v| v.parse().ok())
        .filter(|n| *n > 0)
        .unwrap_or(5);
    let mut w = writers();
    let mut rates = Vec::new();
    let mut totals = Vec::new();
    let mut tokens = Vec::new();
    for i in 0..runs {
        let b = brief(
            station("lofi hip hop", "rainy city nights", "en", false),
            120.0,
            500 + i as u64,
        );
        let song = w.write(&b, &never).expect("written");
        assert!(song.stats.generated_tokens > 0);
        assert!(song.stats.tokens_per_second() > 0.0);
        rates.push(song.stats.tokens_per_second());
        totals.push(song.stats.total_time.as_secs_f64());
        tokens.push(f64::from(song.stats.generated_tokens));
    }
    let median = |v: &mut Vec<f64>| {
        v.sort_by(f64::total_cmp);
        v[v.len() / 2]
    };
    println!(
        "songwriter speed (tiny GGUF, {runs} songs of 120 s, dev profile): median {:.0} tokens/s, {:.3} s per description, {:.0} tokens per answer",
        median(&mut rates),
        median(&mut totals),
        median(&mut tokens)
    );
}
