//! A progress bar on standard error for long walks over a queue: redrawn in place on a terminal,
//! a line every 100 messages otherwise (a log, a CI job), nothing on standard output.

use std::io::IsTerminal;

/// What a redrive has done so far.
#[derive(Clone, Copy, Default, Debug, PartialEq, Eq)]
pub struct Tally {
    pub looked: usize,
    pub moved: usize,
    pub skipped: usize,
    pub failed: usize,
}

/// `[#######.............] 35/100 moved 30 skipped 4 failed 1`. The total is the queues'
/// approximate depth when the walk began, so `looked` may pass it; the bar then stays full.
pub fn render(t: Tally, total: usize, width: usize) -> String {
    let filled = (t.looked * width).checked_div(total).map_or(width, |f| f.min(width));
    format!(
        "[{}{}] {}/{} moved {} skipped {} failed {}",
        "#".repeat(filled),
        ".".repeat(width - filled),
        t.looked,
        total,
        t.moved,
        t.skipped,
        t.failed
    )
}

pub struct Bar {
    total: usize,
    interactive: bool,
}

impl Bar {
    pub fn new(total: usize) -> Self {
        Bar {
            total,
            interactive: std::io::stderr().is_terminal(),
        }
    }

    pub fn show(&self, t: Tally) {
        if self.interactive {
            eprint!("\r{}", render(t, self.total, 30));
        } else if t.looked % 100 == 0 {
            eprintln!("{}", render(t, self.total, 30));
        }
    }

    pub fn finish(&self, t: Tally) {
        if self.interactive {
            eprintln!("\r{}", render(t, self.total, 30));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_bar_fills_with_what_was_looked_at_and_stays_full_past_the_estimate() {
        let t = Tally {
            looked: 5,
            moved: 3,
            skipped: 1,
            failed: 1,
        };
        assert_eq!(render(t, 10, 10), "[#####.....] 5/10 moved 3 skipped 1 failed 1");
        assert_eq!(
            render(Tally { looked: 12, ..t }, 10, 4),
            "[####] 12/10 moved 3 skipped 1 failed 1"
        );
        assert_eq!(render(Tally::default(), 0, 3), "[###] 0/0 moved 0 skipped 0 failed 0");
    }
}
